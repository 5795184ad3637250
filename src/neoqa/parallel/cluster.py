"""Running independent tasks on Dask's distributed scheduler: an existing cluster (``scheduler``,
its address) or a local one of ``workers`` processes.

A task takes plain arguments (paths, ids, numbers) and opens its files itself: h5py handles do
not pickle (dask/distributed#9013) and an HDF5 file opened before a fork is not safe to share
(dask#3179). Each worker runs one task at a time under its share of the thread budget
(``neoqa.threads``), set in its environment before it starts, so its pools never oversubscribe
the machine. Results come back as tasks finish; an error raised in a task is raised here, as it
was (one line for a ``NeoqaError``).
"""

from __future__ import annotations

import contextlib
import functools
import logging

from neoqa import threads
from neoqa.errors import NeoqaError

CONNECT_TIMEOUT = "20s"


def worker_budget(total: int | None, workers: int) -> int:
    """Each of ``workers`` local workers' share of a thread budget of ``total`` (default: the cores)."""
    return max(1, (threads.cores() if total is None else total) // workers)


@contextlib.contextmanager
def dask_cluster(scheduler: str | None = None, workers: int | None = None, threads_total: int | None = None):
    """A task runner on the Dask cluster at ``scheduler``, or on a local cluster of ``workers``
    processes sharing a thread budget of ``threads_total`` (closed on the way out). It yields
    ``run(fn, arguments, on_result=None)``: ``fn(*args)`` for each tuple of ``arguments``, each
    under its worker's share of the budget; ``on_result`` sees each result as its task finishes;
    the results come back in the order of ``arguments``. ``fn`` must be importable where the
    workers run (a module's function)."""
    from distributed import Client, LocalCluster

    if scheduler is not None:
        try:
            client = Client(scheduler, timeout=CONNECT_TIMEOUT)
        except (OSError, TimeoutError, ValueError) as e:
            raise NeoqaError(f"--scheduler {scheduler}: cannot reach a Dask scheduler there ({e})") from None
        with client:
            yield functools.partial(_run, client, threads_total)
        return
    budget = worker_budget(threads_total, workers or 1)
    env = {name: str(budget) for name in threads.POOL_VARIABLES} | {"OMP_WAIT_POLICY": "PASSIVE"}
    with LocalCluster(n_workers=workers or 1, threads_per_worker=1, processes=True, dashboard_address=None,
                      silence_logs=logging.ERROR, env=env) as cluster, Client(cluster) as client:
        yield functools.partial(_run, client, budget)


def budgeted(fn, budget: int | None, *args):
    """``fn(*args)`` under a thread budget (default: the worker's cores over its task threads)."""
    if budget is None:
        from distributed import get_worker

        budget = max(1, threads.cores() // get_worker().state.nthreads)
    threads.set_budget(budget)
    return fn(*args)


def _run(client, budget, fn, arguments, on_result=None) -> list:
    from distributed import as_completed

    futures = [client.submit(budgeted, fn, budget, *args, pure=False) for args in arguments]
    index = {f.key: i for i, f in enumerate(futures)}
    results = [None] * len(futures)
    for future in as_completed(futures):
        results[index[future.key]] = value = future.result()
        if on_result is not None:
            on_result(value)
    return results
