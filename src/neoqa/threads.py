"""The thread budget: how many threads each of a process's pools may run.

A nightly job shares its machine, and every pool it loads (BLAS and OpenMP through numpy and
scikit-learn, torch's intra-op pool, LightGBM's OpenMP, numba) otherwise starts one thread per
core, so two jobs on two cores run four spinning threads each and crawl (a zoo's mlp step took
563 s beside other work instead of 25 s). ``set_budget`` caps every pool at ``n`` threads:

- through the environment, before a library starts its pool (neoqa loads torch, LightGBM and
  scikit-learn lazily, so the command line sets the budget before any of them), which child
  processes (``simulate --workers``, Dask workers) inherit too;
- through threadpoolctl and torch for pools already running (a notebook).

Idle OpenMP threads are told to sleep (``OMP_WAIT_POLICY=PASSIVE``) rather than spin, so a job
waiting for work leaves the cores to the other jobs. LightGBM's models take their thread count
from the budget at fit and at prediction time (``budget()``); the gbdt's own tree walk splits its
rows over the budget (``split_rows``).
"""

from __future__ import annotations

import os
import sys

from neoqa.errors import NeoqaError

POOL_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS")
_budget: int | None = None


def cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or ``taskset`` narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                          # not Linux
        return os.cpu_count() or 1


def budget() -> int:
    """The thread budget in force: the one set, else ``OMP_NUM_THREADS``, else the cores."""
    if _budget is not None:
        return _budget
    try:
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    except (KeyError, ValueError):
        return cores()


def set_budget(n: int | None = None) -> int:
    """Cap every thread pool of this process, and of the processes it starts, at ``n`` threads
    (default: the cores it may use). Returns the budget."""
    global _budget
    n = cores() if n is None else n
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise NeoqaError(f"--threads must be a whole number of at least 1 (got {n!r})")
    _budget = n
    for name in POOL_VARIABLES:
        os.environ[name] = str(n)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if "torch" in sys.modules:
        import torch

        torch.set_num_threads(n)
    if "numba" in sys.modules:
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    from threadpoolctl import threadpool_limits

    threadpool_limits(n)
    return n


def split_rows(fn, a, *args, min_rows: int = 4096):
    """``fn(a, *args)`` for an ``fn`` that works row by row (its result's first axis is ``a``'s) and
    leaves the interpreter lock (NumPy's sorts and partitions do), over the budget's threads, each
    on a slice of rows; what one call gives."""
    import numpy as np

    n = min(budget(), len(a) // min_rows)
    if n <= 1:
        return fn(a, *args)
    from concurrent.futures import ThreadPoolExecutor

    cuts = np.linspace(0, len(a), n + 1).astype(int)
    with ThreadPoolExecutor(n) as pool:
        return np.concatenate(list(pool.map(lambda s: fn(a[s[0]:s[1]], *args), zip(cuts[:-1], cuts[1:]))))


def pools() -> dict:
    """The thread count of every pool loaded in this process: each BLAS or OpenMP library
    (threadpoolctl's view) and torch's intra-op pool."""
    from threadpoolctl import threadpool_info

    found = {f"{p['internal_api']} ({os.path.basename(p['filepath'])})": p["num_threads"] for p in threadpool_info()}
    if "torch" in sys.modules:
        import torch

        found["torch"] = torch.get_num_threads()
    return found
