"""Streaming scoring of a dataset of any size: shard by shard, batch by batch, to Parquet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm import tqdm

from neoqa.models import persistence as persist
from neoqa.outputs import atomic_output, check_output, file_mark
from neoqa.data.store import SheetSet

BATCH = 4096


def score(model_dir, data, out, overwrite: bool = False) -> Path:
    """``sheet_id``, ``probability`` and ``decision`` (1 real, 0 false, -1 undecided) for every sheet.

    A probability that is not finite is never a decision: it is written as it is with decision -1,
    so the sheet goes to a person (``triage`` puts it in the review bucket)."""
    check_output(out, overwrite=overwrite, inputs=(model_dir, data))
    model, info = persist.load(model_dir)
    ds = SheetSet(data)
    thr = info["threshold"]
    schema = pa.schema([("sheet_id", pa.string()), ("probability", pa.float64()), ("decision", pa.int8())],
                       metadata=file_mark())
    out = Path(out)
    with atomic_output(out, overwrite=overwrite, inputs=(model_dir, data)) as tmp:
        with pq.ParquetWriter(tmp, schema) as writer:
            bar = tqdm(total=len(ds), desc="score", unit="sheet")
            for shard in ds.iter_shards():
                persist.check_schema(info, shard, str(data))
                for s in range(0, len(shard), BATCH):
                    part = shard.select(np.arange(s, min(s + BATCH, len(shard))))
                    p = model.predict_proba(part)[:, 1]
                    decision = np.where(np.isfinite(p), p >= thr, -1).astype(np.int8)
                    writer.write_table(pa.table({"sheet_id": part.sheet_id.astype(str), "probability": p,
                                                 "decision": decision}, schema=schema))
                    bar.update(len(part))
            bar.close()
    return out
