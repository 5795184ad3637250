"""Work beyond one process: per-shard tasks on Dask's distributed scheduler (``cluster``)."""
