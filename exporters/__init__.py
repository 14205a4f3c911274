"""Getting the data out: sources, formats, bundles, storage and the export jobs."""
