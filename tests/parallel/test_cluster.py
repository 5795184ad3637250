"""Per-shard scoring on Dask: a local cluster of 2 workers and an existing cluster reached by its
address make the very rows a single process makes; each worker keeps its share of the thread
budget; errors in a task and an unreachable scheduler are one line."""

import pyarrow.parquet as pq
import pytest

from neoqa import threads
from neoqa.cli import main
from neoqa.errors import NeoqaError
from neoqa.parallel import cluster

pytestmark = pytest.mark.filterwarnings("ignore")


def test_dask_scores_equal_a_single_process_row_for_row(tmp_path, small_neowise, zoo_run, capsys):
    from distributed import LocalCluster

    ridge = zoo_run / "models" / "ridge"
    assert main(["score", "--model", str(ridge), "--data", str(small_neowise), "--out", str(tmp_path / "one")]) == 0
    single = pq.read_table(tmp_path / "one")
    assert main(["score", "--model", str(ridge), "--data", str(small_neowise), "--out", str(tmp_path / "local"),
                 "--workers", "2", "--threads", "2"]) == 0
    assert "scored 700 sheets in 2 parts (2 made" in capsys.readouterr().out
    assert pq.read_table(tmp_path / "local").equals(single)
    for part in sorted((tmp_path / "one").glob("part-*.parquet")):
        assert pq.read_table(tmp_path / "local" / part.name).equals(pq.read_table(part))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c:
        assert main(["score", "--model", str(ridge), "--data", str(small_neowise), "--out", str(tmp_path / "remote"),
                     "--scheduler", c.scheduler_address]) == 0
    assert pq.read_table(tmp_path / "remote").equals(single)


def test_each_local_worker_keeps_its_share_of_the_budget():
    with cluster.dask_cluster(workers=2, threads_total=2) as run:
        found = run(threads.pools, [(), ()])
    assert len(found) == 2 and all(found)
    assert all(n == 1 for pools in found for n in pools.values()), found
    assert cluster.worker_budget(8, 3) == 2 and cluster.worker_budget(1, 4) == 1


def test_an_error_in_a_task_is_raised_here_as_one_line(small_neowise, zoo_run, tmp_path):
    from neoqa.data.store import SheetSet
    from neoqa.decide.score import score_task

    shard = SheetSet(small_neowise).shard_paths[0]
    with pytest.raises(NeoqaError, match="changed while it was scoring"), cluster.dask_cluster(workers=1) as run:
        run(score_task, [(str(zoo_run / "models" / "ridge"), "not-its-id", str(shard), str(tmp_path / "p.parquet"),
                          "data")])
    assert not (tmp_path / "p.parquet").exists()


def test_an_unreachable_scheduler_is_one_line(capsys, small_neowise, zoo_run, tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT", "1s")
    out = tmp_path / "s"
    assert main(["score", "--model", str(zoo_run / "models" / "ridge"), "--data", str(small_neowise),
                 "--out", str(out), "--scheduler", "tcp://127.0.0.1:9"]) == 2
    err = capsys.readouterr().err
    assert "--scheduler tcp://127.0.0.1:9: cannot reach a Dask scheduler" in err and err.count("\n") == 1
    assert not out.exists()
    with pytest.raises(SystemExit):
        main(["score", "--model", "m", "--data", "d", "--out", "o", "--workers", "2", "--scheduler", "tcp://x:1"])
