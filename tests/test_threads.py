"""The thread budget reaches every pool: BLAS/OpenMP (threadpoolctl), torch, LightGBM; set by
every verb's --threads before any library starts its pool."""

import json
import os
import subprocess
import sys

import pytest

from neoqa import threads
from neoqa.cli import main
from neoqa.errors import NeoqaError

PROBE = """
import json, sys
{setup}
import numpy, torch, lightgbm, sklearn.linear_model
from threadpoolctl import threadpool_info
numpy.ones((64, 64)) @ numpy.ones((64, 64))
print(json.dumps({{"torch": torch.get_num_threads(),
                  "pools": sorted({{p["internal_api"]: p["num_threads"] for p in threadpool_info()}}.items())}}))
"""


def probe(setup: str) -> dict:
    run = subprocess.run([sys.executable, "-c", PROBE.format(setup=setup)], capture_output=True, text=True,
                         timeout=120, env={k: v for k, v in os.environ.items()
                                           if not k.endswith("_THREADS") and k != "OMP_WAIT_POLICY"})
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(threads.cores() < 2, reason="a budget below the cores needs two cores to show")
def test_a_budget_set_before_the_libraries_load_caps_every_pool():
    free = probe("")
    assert free["torch"] == threads.cores()
    capped = probe("from neoqa.threads import set_budget; set_budget(1)")
    assert capped["torch"] == 1
    assert capped["pools"] and all(n == 1 for _, n in capped["pools"]), capped


@pytest.mark.skipif(threads.cores() < 2, reason="a budget below the cores needs two cores to show")
def test_a_budget_set_after_the_libraries_load_caps_them_too():
    capped = probe("import torch, numpy, lightgbm\nfrom neoqa.threads import set_budget; set_budget(1)")
    assert capped["torch"] == 1 and all(n == 1 for _, n in capped["pools"]), capped


@pytest.mark.skipif(threads.cores() < 2, reason="a budget below the cores needs two cores to show")
def test_every_verb_takes_threads(small_neowise):
    capped = probe(f"from neoqa.cli import main; assert main(['info', '--data', {str(small_neowise)!r}, '--threads', '1']) == 0")
    assert capped["torch"] == 1 and all(n == 1 for _, n in capped["pools"]), capped
    from neoqa.cli import build_parser

    parser = build_parser()
    verbs = parser._subparsers._group_actions[0].choices
    assert all("--threads" in v._option_string_actions for v in verbs.values()), "a verb without --threads"


def test_bad_budgets_are_one_line(capsys, small_neowise):
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(SystemExit) as e:
            main(["info", "--data", str(small_neowise), "--threads", bad])
        assert e.value.code == 2 and "--threads" in capsys.readouterr().err
    with pytest.raises(NeoqaError, match="--threads"):
        threads.set_budget(0)


def test_the_gbdt_follows_the_budget_at_fit_and_at_prediction(monkeypatch, small_batch):
    from neoqa.models.fixed import SummaryModel, gbdt_pipeline

    model = SummaryModel(gbdt_pipeline(0, n_estimators=5), random_state=0)
    monkeypatch.setattr(threads, "_budget", 1)
    model.fit(small_batch)
    assert model.estimator_.pipeline_.steps[-1][1].n_jobs == 1
    # prediction walks the flattened trees (models/forest.py), its rows split over the budget's threads
    import concurrent.futures

    pools = []

    class Recorded(concurrent.futures.ThreadPoolExecutor):
        def __init__(self, n, *a, **kw):
            pools.append(n)
            super().__init__(n, *a, **kw)

    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", Recorded)
    for n in (1, 2):
        monkeypatch.setattr(threads, "_budget", n)
        model.predict_proba(small_batch)
    assert pools == [2]                 # one thread: no pool; two: a pool of two


def test_split_rows_gives_what_one_call_gives():
    import numpy as np

    from neoqa.features.views import pixel_median

    a = np.random.default_rng(0).normal(size=(9000, 2, 5, 5)).astype(np.float32)
    before = threads.budget()
    try:
        for n in (1, 2, 3):
            threads.set_budget(n)
            np.testing.assert_array_equal(pixel_median(a), np.median(a.reshape(9000, 2, -1), axis=2))
            np.testing.assert_array_equal(threads.split_rows(np.sort, a, -1, min_rows=1000), np.sort(a, -1))
    finally:
        threads.set_budget(before)


def test_each_runs_calls_on_threads_with_a_share_of_the_budget(monkeypatch):
    import threading

    import torch

    seen = []

    def call(i):
        seen.append((i, threading.current_thread().name, threads.budget(), torch.get_num_threads()))
        return i * i

    torch_before = torch.get_num_threads()
    for n, calls, per in ((1, 5, 1), (2, 5, 1), (4, 2, 2), (2, 1, 2)):
        monkeypatch.setattr(threads, "_budget", n)
        seen.clear()
        assert sorted(threads.each(call, [(i,) for i in range(calls)])) == [i * i for i in range(calls)]
        on_threads = min(n, calls) > 1
        assert all(name.startswith("neoqa") == on_threads for _, name, _, _ in seen)
        assert {b for _, _, b, _ in seen} == ({per} if on_threads else {n})
        if on_threads:                     # torch's pool is one per process: capped at a thread's share
            assert {t for _, _, _, t in seen} == {per}
        assert threads.budget() == n and torch.get_num_threads() == torch_before       # restored after


def test_each_stops_at_an_error_and_waits_for_what_runs(monkeypatch):
    import time

    monkeypatch.setattr(threads, "_budget", 2)
    began = []

    def call(i):
        began.append(i)
        if i == 0:
            raise NeoqaError("shard 0 is bad")
        time.sleep(0.05)
        return i

    with pytest.raises(NeoqaError, match="shard 0"):
        list(threads.each(call, [(i,) for i in range(50)]))
    time.sleep(0.2)
    assert len(began) < 50 and len(set(began)) == len(began)        # the rest never began
