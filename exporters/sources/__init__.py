"""Source connectors: the contract, the registry and the built-in kinds."""

from exporters.sources.base import CATEGORIES, Dataset, Scope, Source, SourceError

__all__ = ["CATEGORIES", "Dataset", "Scope", "Source", "SourceError"]
