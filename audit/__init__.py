"""Proving it: the audit trail. ``audit.record(...)`` is the only way in."""

from audit.log import SYSTEM, record

__all__ = ["SYSTEM", "record"]
