"""DistributedDataParallel training under torchrun: the ranks share out exactly the minibatches
one process trains on; two CPU processes (gloo) train a set model that loads like any other and
scores within noise of the single-process fit of the same seed; one process writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neoqa.models.sets.loop import RankShares

pytestmark = pytest.mark.filterwarnings("ignore")


def test_the_ranks_share_out_the_single_process_minibatches():
    n, size, world = 103, 16, 2
    shares = [list(RankShares(n, size, torch.Generator().manual_seed(5), r, world)) for r in range(world)]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(5)).tolist()
    whole = [perm[s:s + size] for s in range(0, n, size)]          # the last one holds 7 sheets: kept
    assert len(shares[0]) == len(shares[1]) == len(whole) == len(RankShares(n, size, None, 0, world))
    for step, batch in enumerate(whole):
        assert sorted(shares[0][step] + shares[1][step]) == sorted(batch)
        assert abs(len(shares[0][step]) - len(shares[1][step])) <= 1
    tiny = list(RankShares(17, 16, torch.Generator().manual_seed(5), 0, 2))    # a last batch of one: dropped
    assert len(tiny) == 1 and len(RankShares(17, 16, None, 0, 2)) == 1


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch without distributed support")
def test_torchrun_trains_a_set_model_on_two_processes(tmp_path, small_neowise):
    from neoqa.evaluate.evaluation import evaluate_path
    from neoqa.models import persistence

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single, double = tmp_path / "one", tmp_path / "two"
    args = ["train", "--kind", "basic_sneon", "--data", str(small_neowise), "--seed", "3"]
    run = subprocess.run([sys.executable, "-m", "neoqa.cli", *args, "--out", str(single)], capture_output=True,
                         text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    torchrun = Path(sys.executable).parent / "torchrun"
    run = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "neoqa.cli", *args,
                          "--out", str(double)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("wrote") == 1 and "on 2 processes" in run.stdout     # rank 0 writes, once
    info = json.loads((double / "model.json").read_text())
    assert info["processes"] == 2 and json.loads((single / "model.json").read_text())["processes"] == 1
    persistence.load(double)                                       # loads like any other model
    a, b = (evaluate_path(m, small_neowise, resamples=0)["labels"]["rates"]["accuracy"] for m in (single, double))
    noise = 3 * np.sqrt(0.25 / a["of"])                            # three binomial standard errors, at worst
    assert abs(a["value"] - b["value"]) <= noise, (a["value"], b["value"])
    assert b["value"] > 0.85
    assert not list(tmp_path.glob(".*partial"))


def test_torchrun_refuses_models_that_are_not_set_models(tmp_path, small_neowise):
    torchrun = Path(sys.executable).parent / "torchrun"
    run = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "neoqa.cli", "train",
                          "--kind", "ridge", "--data", str(small_neowise), "--out", str(tmp_path / "m")],
                         capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert run.returncode != 0 and "trains the set models only" in run.stderr
    assert not (tmp_path / "m").exists()
