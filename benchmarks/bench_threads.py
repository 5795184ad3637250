"""The thread budget, measured: two jobs sharing the machine's cores, side by side in one run.

For each model, the training step (`neoqa train`) on one seeded dataset:
- alone, with the default budget (all the cores this process may use);
- two at once, without any budget: the library called directly, every pool at its own default
  (what the main job did beside other work before the budget existed);
- two at once, each with the default budget (`neoqa train`, no --threads: as many threads as
  cores each, idle OpenMP threads sleeping);
- two at once, each with half the cores (`--threads N/2`).
The slowdown of a pair is its mean wall time over the lone run's: 2.0 is each job at half speed,
the ideal on a machine they share; 10 would be each at a tenth. Usage:
python benchmarks/bench_threads.py [--sheets N] [--models mlp gbdt basic_sneon] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NO_BUDGET = r"""
import sys, warnings
warnings.simplefilter("ignore")
from neoqa.train.fit import train_model
from neoqa.data.store import SheetSet
train_model(sys.argv[1], SheetSet(sys.argv[2]).read(), sys.argv[3], overwrite=True)
"""


def clean_env() -> dict:
    """The environment without any thread setting, as a user's shell has it."""
    return {k: v for k, v in os.environ.items() if not k.endswith("_THREADS") and k != "OMP_WAIT_POLICY"}


def command(mode: str, model: str, data: Path, out: Path, cores: int) -> list[str]:
    if mode == "no budget":
        return [sys.executable, "-c", NO_BUDGET, model, str(data), str(out)]
    threads = [] if mode == "default budget" else ["--threads", str(max(1, cores // 2))]
    return [sys.executable, "-m", "neoqa.cli", "train", "--kind", model, "--data", str(data), "--out", str(out),
            "--overwrite", *threads]


def run_together(cmds: list[list[str]]) -> list[float]:
    """Start every command at once; each one's wall time."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=clean_env())
             for c in cmds]
    times = [0.0] * len(procs)
    pending = set(range(len(procs)))
    while pending:
        for i in list(pending):
            if procs[i].poll() is not None:
                times[i] = time.perf_counter() - t0
                pending.discard(i)
                if procs[i].returncode != 0:
                    raise SystemExit(f"{' '.join(cmds[i])} failed: {procs[i].stderr.read()[-2000:]}")
        time.sleep(0.05)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sheets", type=int, default=8000)
    ap.add_argument("--models", nargs="+", default=["mlp", "gbdt", "basic_sneon"])
    ap.add_argument("--json", default=None, help="also write the results here")
    a = ap.parse_args()
    cores = len(os.sched_getaffinity(0))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        subprocess.run([sys.executable, "-m", "neoqa.cli", "simulate", "--sheets", str(a.sheets), "--seed", "0",
                        "--out", str(data), "--quiet"], check=True, stdout=subprocess.DEVNULL, env=clean_env())
        for model in a.models:
            alone = run_together([command("default budget", model, data, tmp / "alone", cores)])[0]
            row = {"model": model, "alone_s": alone}
            for mode in ("no budget", "default budget", "half the cores each"):
                pair = run_together([command(mode, model, data, tmp / f"job{j}", cores) for j in range(2)])
                row[mode] = {"seconds": pair, "slowdown": sum(pair) / len(pair) / alone}
            rows.append(row)
            print(f"{model}: alone {alone:.1f} s; two at once: " + "; ".join(
                f"{m} {row[m]['slowdown']:.2f}x ({', '.join(f'{s:.1f}' for s in row[m]['seconds'])} s)"
                for m in ("no budget", "default budget", "half the cores each")), flush=True)
    result = {"cores": cores, "sheets": a.sheets, "python": sys.version.split()[0], "rows": rows}
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
