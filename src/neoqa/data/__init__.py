"""QA-sheet data: the schema, the in-memory container, the on-disk shards, splits and label sources.

Everything above works on ``data.sheets.SheetBatch`` objects read from ``data.store.SheetSet`` folders.
"""
