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

Work made of independent pieces (the scorer's shards) runs best with each piece on a thread of its
own and every pool at one thread: reading, hashing and the model's own Python then overlap, and no
pool waits on another (``each``). A thread so started has a budget of its own (``budget()`` answers
per thread), and the pools are capped at it meanwhile (torch's pool is one per process).
"""

from __future__ import annotations

import os
import sys
import threading
from contextlib import contextmanager

from neoqa.errors import NeoqaError

POOL_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                   "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "NUMBA_NUM_THREADS")
_budget: int | None = None
_local = threading.local()          # the budget of a thread that ``each`` started


def cores() -> int:
    """The cores this process may run on (its CPU affinity, which a container or ``taskset`` narrows)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                          # not Linux
        return os.cpu_count() or 1


def budget() -> int:
    """The thread budget in force: this thread's own (``each``), else the one set, else
    ``OMP_NUM_THREADS``, else the cores."""
    own = getattr(_local, "budget", None)
    if own is not None:
        return own
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


def each(fn, calls):
    """``fn(*args)`` for each of ``calls``, the calls spread over ``w = min(budget(), len(calls))``
    threads, each with a budget of ``budget() // w`` and every pool of the process capped at that
    meanwhile; yields the results as they finish (in any order). One thread, or one call: in this
    thread, in order. When a call raises, the calls not yet begun are dropped, those running are
    waited for, and the error is raised."""
    w = min(budget(), len(calls))
    if w <= 1:
        yield from (fn(*args) for args in calls)
        return
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    per = budget() // w
    with _pools_at(per), ThreadPoolExecutor(w, thread_name_prefix="neoqa", initializer=_own_budget,
                                            initargs=(per,)) as pool:
        running = {pool.submit(fn, *args) for args in calls}
        try:
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()
        finally:            # an error (or the caller stopping): nothing more begins
            for f in running:
                f.cancel()


def _own_budget(n: int) -> None:
    _local.budget = n
    if "numba" in sys.modules:          # numba's thread count is per calling thread
        import numba

        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))


@contextmanager
def _pools_at(n: int):
    """Every pool loaded in this process capped at ``n`` threads, and restored after."""
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        if torch is not None:
            torch.set_num_threads(before)


def pools() -> dict:
    """The thread count of every pool loaded in this process: each BLAS or OpenMP library
    (threadpoolctl's view) and torch's intra-op pool."""
    from threadpoolctl import threadpool_info

    found = {f"{p['internal_api']} ({os.path.basename(p['filepath'])})": p["num_threads"] for p in threadpool_info()}
    if "torch" in sys.modules:
        import torch

        found["torch"] = torch.get_num_threads()
    return found
