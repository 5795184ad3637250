"""Shards, seeds, workers: turning the batch generator into a dataset on disk.

Shard ``i`` of a run is a pure function of (seed, survey, i, settings), so the
bytes do not depend on the number of workers or on the order shards finish.
"""

from __future__ import annotations

import ctypes
import json
import multiprocessing
import os
import signal
from dataclasses import asdict, fields, replace
from pathlib import Path

import numpy as np

from neoqa import __version__
from neoqa.errors import NeoqaError
from neoqa.data.sheets import SheetBatch
from neoqa.outputs import atomic_output
from neoqa.data.store import shard_name, write_manifest, write_shard_file
from neoqa.simulate import instruments
from neoqa.simulate.config import SimConfig
from neoqa.simulate.generator import simulate_candidates
from neoqa.progress import progress_bar

DEFAULT_SHEETS = 40_000
DEFAULT_PATH = Path("data") / "neowise-default"
SHARD_SIZE = 5_000
GEN_CHUNK = 2_048


def simulate_batch(cfg: SimConfig, n: int, seed: int, shard: int = 0, first_index: int = 0) -> SheetBatch:
    """Exactly ``n`` sheets at the configured class balance, deterministic in its arguments."""
    inst = instruments.get(cfg.survey)
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(inst.code, shard)))
    n_pos = int(rng.binomial(n, cfg.positive_fraction))
    chunks, pos, neg, have_pos, have_neg = [], [], [], 0, 0
    tried, found_pos, found_neg = 0, 0, 0
    for _ in range(10_000):
        if have_pos >= n_pos and have_neg >= n - n_pos:
            break
        size = _chunk_size(n_pos - have_pos, n - n_pos - have_neg, tried, found_pos, found_neg)
        cand = simulate_candidates(rng, inst, cfg, size)
        tried += size
        if cand is None:
            continue
        lab = cand.truth_sheet["clean_label"]
        found_pos += int(np.sum(lab == 1)); found_neg += int(np.sum(lab == 0))
        p = np.flatnonzero(lab == 1)[: max(0, n_pos - have_pos)]
        q = np.flatnonzero(lab == 0)[: max(0, n - n_pos - have_neg)]
        if len(p) or len(q):
            pos.append(np.stack([np.full(len(p), len(chunks)), p]))
            neg.append(np.stack([np.full(len(q), len(chunks)), q]))
            chunks.append(cand)
            have_pos += len(p); have_neg += len(q)
    else:
        raise NeoqaError(f"the simulator could not reach positive fraction {cfg.positive_fraction}")
    # (chunk, row) of the positives then the negatives, shuffled, gathered in one pass
    which, rows = np.concatenate(pos + neg, axis=1)[:, rng.permutation(have_pos + have_neg)]
    batch = SheetBatch.gather(chunks, which, rows)
    flip = rng.random(n) < cfg.label_noise
    batch.label = np.where(flip, 1 - batch.truth_sheet["clean_label"], batch.truth_sheet["clean_label"]).astype(np.int8)
    batch.sheet_id = sheet_ids(inst, seed, first_index, n)
    batch.meta = dataset_meta(inst, cfg, seed)
    return batch


def sheet_ids(inst, seed: int, first: int, n: int) -> np.ndarray:
    """``NW7-000000042``: the survey's prefix, the seed and the sheet's index, so that ids stay
    unique across seeds and surveys (sheets of two datasets can be pooled, and a split, a hash of
    the id, is drawn independently for each)."""
    return np.array([f"{inst.id_prefix}{seed}-{first + i:09d}" for i in range(n)])


def _chunk_size(need_pos, need_neg, tried, found_pos, found_neg) -> int:
    """Candidates to simulate next: GEN_CHUNK, or, once the yields so far say fewer will do,
    enough for what is still needed with a 10% margin (the last chunk is mostly not wasted)."""
    if found_pos == 0 or found_neg == 0:
        return GEN_CHUNK
    need = max(need_pos * tried / found_pos, need_neg * tried / found_neg)
    return int(min(GEN_CHUNK, np.ceil(1.1 * need) + 32))


def dataset_meta(inst, cfg: SimConfig, seed: int) -> dict:
    return {
        "survey": inst.name,
        "channels": list(inst.channels),
        "pixel_scale_arcsec": inst.pixel_scale_arcsec,
        "psf_fwhm_arcsec": list(inst.fwhm_arcsec),
        "detect_snr": inst.detect_snr,
        "provenance": {"generator": "neoqa.simulate", "neoqa_version": __version__, "seed": int(seed),
                       "config": json.loads(json.dumps(asdict(cfg)))},
    }


def _shard_job(args):
    cfg, n, seed, shard, first, folder = args
    batch = simulate_batch(cfg, n, seed, shard, first)
    write_shard_file(Path(folder) / shard_name(shard), batch)
    return shard, len(batch)


def _worker_init():
    """A worker dies with its parent (PR_SET_PDEATHSIG): a SIGKILLed simulate leaves no writer behind.
    Interrupts go to the parent, which terminates the pool."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)       # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:                        # the parent died before the line above ran
        os._exit(1)


def check_settings(n_sheets: int, workers: int, settings: dict) -> None:
    """Counts positive, fractions in range, known setting names: one line naming the setting."""
    if isinstance(n_sheets, bool) or not isinstance(n_sheets, int) or n_sheets < 1:
        raise NeoqaError(f"--sheets must be a whole number of at least 1 (got {n_sheets!r})")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise NeoqaError(f"--workers must be a whole number of at least 1 (got {workers!r})")
    known = {f.name for f in fields(SimConfig)}
    for key, value in settings.items():
        if key not in known:
            raise NeoqaError(f"unknown simulator setting {key!r}")
    pf, ln = settings.get("positive_fraction"), settings.get("label_noise")
    if pf is not None and not 0 < pf < 1:
        raise NeoqaError(f"--positive-fraction must be between 0 and 1 (exclusive), not {pf}")
    if ln is not None and not 0 <= ln <= 0.5:
        raise NeoqaError(f"--label-noise must be in [0, 0.5] (a rate above one half inverts the labels), not {ln}")


def simulate(out, n_sheets: int = DEFAULT_SHEETS, seed: int = 0, survey: str = "neowise",
             workers: int = 1, progress: bool = True, overwrite: bool = False, **settings) -> Path:
    """Simulate ``n_sheets`` sheets into the dataset folder ``out`` (atomically).

    An existing ``out`` is replaced only with ``overwrite`` (and only if neoqa wrote it).
    """
    check_settings(n_sheets, workers, settings)
    cfg = replace(SimConfig(survey=survey), **settings)
    inst = instruments.get(survey)
    sizes = [min(SHARD_SIZE, n_sheets - s) for s in range(0, n_sheets, SHARD_SIZE)]
    out = Path(out)
    with atomic_output(out, overwrite=overwrite, folder=True, kind="dataset") as tmp:
        jobs = [(cfg, size, seed, i, i * SHARD_SIZE, str(tmp)) for i, size in enumerate(sizes)]
        bar = progress_bar(total=n_sheets, desc=f"simulate {survey}", unit="sheet", disable=not progress)
        if workers > 1 and len(jobs) > 1:
            # spawn, not fork: a child forked while another thread of this process (torch, OpenMP,
            # numba, a notebook's) holds a lock waits on it forever. Each worker pays ~1 s of imports.
            ctx = multiprocessing.get_context("spawn")
            pool = ctx.Pool(min(workers, len(jobs), os.cpu_count() or 1), initializer=_worker_init)
            try:
                for _, count in pool.imap_unordered(_shard_job, jobs):
                    bar.update(count)
                pool.close()
            except BaseException:
                pool.terminate()                 # no worker goes on writing into a removed folder
                raise
            finally:
                pool.join()
        else:
            for job in jobs:
                bar.update(_shard_job(job)[1])
        bar.close()
        meta = dataset_meta(inst, cfg, seed)
        from neoqa.data.schema import CUTOUT_SIZE, OBS_SCALARS, SHEET_SCALARS
        meta.update({"cutout_size": CUTOUT_SIZE, "sheet_scalars": list(SHEET_SCALARS),
                     "obs_scalars": list(OBS_SCALARS), "has_truth": True})
        write_manifest(tmp, meta, sizes)
    return out
