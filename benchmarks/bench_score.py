"""Scoring speed of every model, side by side in one run: from disk and in memory, on 1 and 2
threads, against this machine's fp32 peak, with peak memory.

- from disk: `neoqa.decide.score.score` over a seeded dataset (shards read, views built, Parquet
  parts written), the model already loaded; the process's start-up (imports, model loading) is
  reported apart;
- in memory: `model.predict_proba` on the sheets already read (the zoo table's measure);
- FLOPs per sheet: counted by torch's FlopCounterMode over the model's differentiable form of a
  sheet (`models.torch_forward`, the exact translation explanations use), averaged over sheets;
  n/a for trees (gbdt, the ensemble's gbdt member) whose work is comparisons;
- the fp32 peak: a 2048x2048 float32 matrix product, timed in the same run on the same threads;
- peak memory: the scoring process's maximum resident set.
Each (model, threads) runs in its own process so that threads and memory are its own. Usage:
python benchmarks/bench_score.py [--sheets N] [--models-from runs/zoo/models] [--models ...]
[--json OUT] [--profile MODEL]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
from neoqa.threads import set_budget
set_budget(int(sys.argv[4]))
import numpy as np, torch
from neoqa.data.store import SheetSet
from neoqa.decide.score import score
from neoqa.models import persistence
model_dir, data, out, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
model, info = persistence.load(model_dir)
startup = time.perf_counter() - t0
t = time.perf_counter()
m = score(model_dir, data, out, progress=False)
disk = time.perf_counter() - t
ds = SheetSet(data)
batch = ds.read()
model.predict_proba(batch.select(np.arange(256)))              # warm-up
t = time.perf_counter()
model.predict_proba(batch)
memory = time.perf_counter() - t
flops = None
try:
    from torch.utils.flop_counter import FlopCounterMode
    from neoqa.models.torch_forward import inputs_for, is_differentiable
    if is_differentiable(model):
        total, n = 0, 32
        with FlopCounterMode(display=False) as fc:
            for i in range(n):
                si = inputs_for(model, batch.select([i]))
                with torch.inference_mode():
                    si.forward(*si.tensors)
        flops = fc.get_total_flops() / n
except Exception as e:          # a model without a differentiable form: no FLOP count
    flops = None
a = torch.randn(2048, 2048)
a @ a
t = time.perf_counter()
for _ in range(10):
    a @ a
peak = 10 * 2 * 2048 ** 3 / (time.perf_counter() - t)
print(json.dumps({"sheets": len(batch), "startup_s": startup, "disk_s": disk, "memory_s": memory,
                  "flops_per_sheet": flops, "peak_flops": peak,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

PROFILE = r"""
import cProfile, pstats, sys, warnings
warnings.simplefilter("ignore")
from neoqa.decide.score import score
from neoqa.models import persistence
persistence.load(sys.argv[1])
cProfile.run("score(sys.argv[1], sys.argv[2], sys.argv[3], progress=False)", sys.argv[3] + ".prof")
pstats.Stats(sys.argv[3] + ".prof").sort_stats("cumulative").print_stats(25)
"""


def env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.endswith("_THREADS") and k != "OMP_WAIT_POLICY"}


def measure(model_dir: Path, data: Path, out: Path, threads: int) -> dict:
    r = subprocess.run([sys.executable, "-c", CHILD, str(model_dir), str(data), str(out), str(threads)],
                       capture_output=True, text=True, env=env())
    if r.returncode != 0:
        raise SystemExit(f"{model_dir.name} on {threads} thread(s) failed:\n{r.stderr[-3000:]}")
    res = json.loads(r.stdout.strip().splitlines()[-1])
    n = res["sheets"]
    res.update(disk_per_s=n / res["disk_s"], memory_per_s=n / res["memory_s"])
    res["peak_fraction"] = (res["flops_per_sheet"] * res["memory_per_s"] / res["peak_flops"]
                            if res["flops_per_sheet"] else None)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sheets", type=int, default=20000)
    ap.add_argument("--models-from", default="runs/zoo/models", help="a zoo run's models (make run writes them)")
    ap.add_argument("--models", nargs="+", default=None, help="default: every model in --models-from")
    ap.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    ap.add_argument("--json", default=None)
    ap.add_argument("--profile", default=None, help="also print where scoring this model from disk spends its time")
    a = ap.parse_args()
    root = Path(a.models_from)
    if not root.is_dir():
        raise SystemExit(f"{root}: no trained models (run `make run`, or pass --models-from)")
    names = a.models or sorted(p.name for p in root.iterdir() if (p / "model.json").exists())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        subprocess.run([sys.executable, "-m", "neoqa.cli", "simulate", "--sheets", str(a.sheets), "--seed", "0",
                        "--workers", "2", "--out", str(data), "--quiet"], check=True, stdout=subprocess.DEVNULL)
        print(f"{a.sheets:,} seeded NEOWISE sheets, {len(list(data.glob('*.h5')))} shards; "
              f"{len(os.sched_getaffinity(0))} cores", flush=True)
        print("| model | threads | sheets/s from disk | sheets/s in memory | FLOP/sheet | of fp32 peak | "
              "peak fp32 GFLOP/s | start-up s | peak MB |\n|---|---|---|---|---|---|---|---|---|", flush=True)
        for name in names:
            for threads in a.threads:
                r = measure(root / name, data, tmp / f"scores-{name}-{threads}", threads)
                r.update(model=name, threads=threads)
                rows.append(r)
                flops = f"{r['flops_per_sheet'] / 1e6:.2f} M" if r["flops_per_sheet"] else "n/a"
                frac = f"{r['peak_fraction']:.1%}" if r["peak_fraction"] is not None else "n/a"
                print(f"| {name} | {threads} | {r['disk_per_s']:,.0f} | {r['memory_per_s']:,.0f} | {flops} | {frac} | "
                      f"{r['peak_flops'] / 1e9:.0f} | {r['startup_s']:.1f} | {r['peak_rss_mb']:,.0f} |", flush=True)
        if a.profile:
            p = subprocess.run([sys.executable, "-c", PROFILE, str(root / a.profile), str(data), str(tmp / "prof")],
                               capture_output=True, text=True, env=env())
            print(p.stdout[-6000:] or p.stderr[-3000:])
    if a.json:
        Path(a.json).write_text(json.dumps({"sheets": a.sheets, "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
