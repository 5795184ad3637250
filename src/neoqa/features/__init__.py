"""The views models read: fixed-length, per-length and padded-set arrays built from a ``SheetBatch``."""
