"""Scoring a dataset of any size: one task per shard, each writing its own Parquet part, and a
manifest when all are done.

The output is a folder (a Parquet dataset: ``pyarrow.parquet.read_table(folder)`` reads it whole):
``part-NNNNN.parquet`` per shard, with ``sheet_id``, ``probability``, ``decision`` (1 real, 0
false at the model's threshold, -1 where the probability is not finite: never a silent decision)
and ``bucket`` (the saved operating point's accept / review / reject, empty where the model has
none); ``_manifest.json`` once every part is there. Every part records in its Parquet metadata the
model's id (a digest of its folder), neoqa's version, the shard's digest, the threshold and the
operating point. A part is written atomically, so a killed run leaves whole parts only; a rerun
skips the parts already made by the same model from the same shard (idempotent) and makes the
rest (it resumes). ``--overwrite`` replaces a folder of another model's or data's scores.
"""

from __future__ import annotations

import contextlib
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from neoqa import __version__, threads
from neoqa.data.store import SheetSet, dataset_digest, file_digest, read_shard
from neoqa.errors import NeoqaError
from neoqa.models import persistence as persist
from neoqa.models.calibration import BUCKETS
from neoqa.outputs import (MARKER, atomic_output, check_output, command, read_marker, remove_stale_partials,
                           write_marker)
from neoqa.progress import progress_bar

BATCH = 4096
MANIFEST = "_manifest.json"          # "_" first: a Parquet dataset reader skips it
FORMAT = "neoqa-scores"
SCHEMA = pa.schema([("sheet_id", pa.string()), ("probability", pa.float64()), ("decision", pa.int8()),
                    ("bucket", pa.string())])


def part_name(i: int) -> str:
    return f"part-{i:05d}.parquet"


def ensure_part(model, info: dict, model_id: str, reads, shard_path: Path, part: Path, where: str) -> tuple[int, bool]:
    """Make ``part`` from the shard unless it is already a whole part of this model's scores of
    these very bytes; (the shard's sheets, whether it was made). ``reads`` is the model's
    ``reads()``, asked once per run, not per shard. The unit of work a thread, a process or a Dask
    worker runs: it opens the shard itself, and hashes it once."""
    return make_part(model, info, model_id, fetch(shard_path, part, model_id, reads), part, where)


def fetch(shard_path: Path, part: Path, model_id: str, arrays=None) -> tuple:
    """What scoring a shard needs from disk: (the shard, its digest, the sheets of ``part`` if that
    is already a whole part of these bytes, else the shard's sheets: truth unread, and of the other
    arrays only ``arrays``, the model's ``reads()``, None for all). The hash runs on
    a thread of its own while the shard is read (the hash leaves the interpreter lock),
    unless a part is there to be checked, when the hash comes first and a whole part is not read."""
    if part.exists():
        digest = file_digest(shard_path)
        done = part_done(part, model_id, digest)
        if done is not None:
            return shard_path, digest, done
        return shard_path, digest, read_shard(shard_path, truth=False, arrays=arrays)
    if threads.budget() == 1:           # one thread may run: one after the other
        return shard_path, file_digest(shard_path), read_shard(shard_path, truth=False, arrays=arrays)
    with ThreadPoolExecutor(1) as pool:
        digest = pool.submit(file_digest, shard_path)
        batch = read_shard(shard_path, truth=False, arrays=arrays)
        return shard_path, digest.result(), batch


def make_part(model, info: dict, model_id: str, fetched: tuple, part: Path, where: str) -> tuple[int, bool]:
    """``fetch``'s result scored into ``part`` (or its whole part's count): (sheets, whether made)."""
    shard_path, digest, got = fetched
    if isinstance(got, int):
        return got, False
    (part.parent / MANIFEST).unlink(missing_ok=True)     # the folder is whole again when the manifest is back
    return score_batch(model, info, model_id, got, shard_path, part, where, digest), True


def score_batch(model, info: dict, model_id: str, batch, shard_path: Path, part: Path, where: str,
                digest: str) -> int:
    """A shard's sheets, already read, scored into the Parquet file ``part`` (atomically)."""
    batch = persist.conform(model, info, batch, where)
    thr = float(info["threshold"])
    point = getattr(model, "operating_point", None)
    meta = {"neoqa_version": __version__, "model": info["model"], "model_id": model_id, "threshold": repr(thr),
            "operating_point": json.dumps(point.as_dict() if point is not None else None),
            "shard": shard_path.name, "shard_digest": digest, "sheets": str(len(batch)),
            "command": command()}
    part.unlink(missing_ok=True)        # a broken part of ours (the folder was checked to be our scores)
    with atomic_output(part, overwrite=True) as tmp:
        with pq.ParquetWriter(tmp, SCHEMA.with_metadata(meta)) as writer:
            for s in range(0, len(batch), BATCH):
                chunk = batch.slice(s, min(s + BATCH, len(batch)))         # views, not copies
                p = model.predict_proba(chunk)[:, 1]
                decision = np.where(np.isfinite(p), p >= thr, -1).astype(np.int8)
                bucket = np.array(BUCKETS)[point.buckets(p)] if point is not None else np.full(len(p), None)
                writer.write_table(pa.table({"sheet_id": chunk.sheet_id.astype(str), "probability": p,
                                             "decision": decision, "bucket": bucket}, schema=SCHEMA))
    return len(batch)


def part_done(part: Path, model_id: str, shard_digest: str) -> int | None:
    """The sheet count of ``part`` if it is a whole part of this model's scores of the shard whose
    digest is ``shard_digest`` (a rerun skips it), else None."""
    try:
        meta = pq.read_schema(part).metadata or {}
        rows = pq.read_metadata(part).num_rows
    except (OSError, pa.ArrowInvalid):
        return None
    whole = (meta.get(b"model_id") == model_id.encode() and meta.get(b"neoqa_version") == __version__.encode()
             and meta.get(b"shard_digest") == shard_digest.encode() and rows == int(meta.get(b"sheets", b"-1")))
    return rows if whole else None


def score_task(model_dir: str, model_id: str, shard_path: str, part: str, where: str) -> tuple[int, bool]:
    """``ensure_part`` as a Dask worker runs it: the model loaded once per process (and checked to
    be the folder the run began with)."""
    key = (model_dir, model_id)
    if key not in _LOADED:
        if persist.model_id(Path(model_dir)) != model_id:
            raise NeoqaError(f"{model_dir}: the model folder changed while it was scoring; score again")
        _LOADED.clear()
        model, info = persist.load(Path(model_dir))
        _LOADED[key] = model, info, model.reads()
    model, info, reads = _LOADED[key]
    return ensure_part(model, info, model_id, reads, Path(shard_path), Path(part), where)


_LOADED: dict = {}          # a worker's loaded model, its info and reads(), by (folder, model id)


def score(model_dir, data, out, overwrite: bool = False, progress: bool = True, scheduler: str | None = None,
          workers: int | None = None, threads: int | None = None) -> dict:
    """Score every shard of ``data`` with the model in ``model_dir`` into the folder ``out``: in
    this process, or as Dask tasks on the cluster at ``scheduler`` or on a local cluster of
    ``workers`` processes (sharing a budget of ``threads``; docs/scale.md). The parts are the same."""
    model_dir, out = Path(model_dir), Path(out)
    model, info = persist.load(model_dir)
    ds = SheetSet(data)
    mid = persist.model_id(model_dir)
    if scheduler is None and workers is None:
        return _score(model, info, mid, model_dir, ds, data, out, overwrite, progress, None)
    from neoqa.parallel.cluster import dask_cluster

    check_output(out, overwrite=True, inputs=(model_dir, data), folder=True)    # before a cluster starts
    with dask_cluster(scheduler, workers, threads) as run:      # reached before anything is written
        return _score(model, info, mid, model_dir, ds, data, out, overwrite, progress, run)


def _score(model, info, mid, model_dir, ds, data, out, overwrite, progress, run) -> dict:
    existed = out.is_dir()
    fresh = not existed or not any(out.iterdir())
    _prepare(out, mid, ds, overwrite, (model_dir, data))
    made = []
    try:
        with progress_bar(total=len(ds), desc="score", unit="sheet", disable=not progress) as bar:
            def done(result):
                bar.update(result[0])
                made.append(result[1])

            if run is None:         # a shard per thread of the budget (threads.each)
                reads = model.reads()
                for result in threads.each(ensure_part, [(model, info, mid, reads, p, out / part_name(i), str(data))
                                                         for i, p in enumerate(ds.shard_paths)]):
                    done(result)
            else:
                run(score_task, [(str(model_dir.resolve()), mid, str(shard_path.resolve()),
                                  str((out / part_name(i)).resolve()), str(data))
                                 for i, shard_path in enumerate(ds.shard_paths)], done)
    except NeoqaError:
        if fresh:                       # bad input: no partial output (a killed run keeps its parts to resume)
            for p in [out / MARKER, *(out / part_name(i) for i in range(len(ds.shard_paths)))]:
                p.unlink(missing_ok=True)
            if not existed:
                with contextlib.suppress(OSError):
                    out.rmdir()
        raise
    return _finish(out, mid, info, ds, data, sum(made), len(made) - sum(made))


def _prepare(out: Path, model_id: str, ds: SheetSet, overwrite: bool, inputs) -> None:
    """The output folder: made, resumed (a folder of this model's scores of these shards) or, with
    ``overwrite``, emptied of another model's or data's scores."""
    check_output(out, overwrite=True, inputs=inputs, folder=True)      # never into an input; links refused
    if out.exists() and any(out.iterdir()):
        mark = read_marker(out, "scores")
        if mark is None:
            raise NeoqaError(f"{out}: is not a folder of neoqa scores; choose another --out")
        same = mark.get("model_id") == model_id and mark.get("shards") == [p.name for p in ds.shard_paths]
        if not same:
            if not overwrite:
                raise NeoqaError(f"{out}: holds scores by another model or of other data (pass --overwrite to "
                                 "replace them)")
            for p in out.iterdir():
                if p.name == MANIFEST or p.name == MARKER or (p.name.startswith("part-") and p.suffix == ".parquet"):
                    p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(out / MANIFEST)
    for i in range(len(ds.shard_paths)):
        remove_stale_partials(out / part_name(i))
    write_marker(out, {"written_by": "neoqa", "neoqa_version": __version__, "kind": "scores", "model_id": model_id,
                      "shards": [p.name for p in ds.shard_paths]})


def _finish(out: Path, model_id: str, info: dict, ds: SheetSet, data, made: int, skipped: int) -> dict:
    """The manifest, written last: the parts, their shards' digests, the bucket counts."""
    parts, counts = [], {b: 0 for b in BUCKETS}
    for i, shard_path in enumerate(ds.shard_paths):
        part = out / part_name(i)
        meta = pq.read_schema(part).metadata
        for row in pc.value_counts(pq.read_table(part, columns=["bucket"]).column("bucket")).to_pylist():
            if row["values"] in counts:
                counts[row["values"]] += row["counts"]
        parts.append({"file": part.name, "shard": shard_path.name, "sheets": ds.counts[i],
                      "shard_digest": meta[b"shard_digest"].decode()})
    manifest = {"format": FORMAT, "neoqa_version": __version__, "model": info["model"], "model_id": model_id,
                "threshold": float(info["threshold"]), "operating_point": info.get("operating_point"),
                "data": str(data), "data_digest": dataset_digest(p["shard_digest"] for p in parts), "sheets": len(ds),
                "buckets": counts,
                "parts": parts, "made": made, "skipped": skipped, "command": command()}
    with atomic_output(out / MANIFEST, overwrite=True) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
