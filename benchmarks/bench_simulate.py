"""Simulator throughput and memory, measured side by side in one run.

Each configuration runs in its own process so that its peak resident memory is
its own. Reports sheets/s per worker and peak RSS, and the ratios that matter:
memory as N grows (should stay flat: shards stream to disk) and the speed-up from
a second worker. The steady rate, (N2 - N1) / (t2 - t1) between the smallest and
largest run of a survey, leaves out the fixed cost of a run (about a second to
import and to load the compiled kernels), which a million-sheet run does not feel. Usage: python benchmarks/bench_simulate.py [--sheets N ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
from neoqa.simulate import simulate
survey, n, workers, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
t = time.perf_counter()
simulate(out, n, seed=0, survey=survey, workers=workers, progress=False)
dt = time.perf_counter() - t
self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"seconds": dt, "peak_rss_mb": max(self_kb, child_kb) / 1024}))
"""


def measure(survey, n, workers):
    with tempfile.TemporaryDirectory() as tmp:
        r = subprocess.run([sys.executable, "-c", CHILD, survey, str(n), str(workers), f"{tmp}/ds"],
                           capture_output=True, text=True, check=True)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out.update(survey=survey, sheets=n, workers=workers,
               sheets_per_s=n / out["seconds"], sheets_per_s_per_worker=n / out["seconds"] / workers)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sheets", type=int, nargs="+", default=[10000, 100000])
    p.add_argument("--json", default=None, help="also write the rows here")
    a = p.parse_args()
    rows = []
    for survey in ("neowise", "neosurveyor"):
        for n in a.sheets:
            rows.append(measure(survey, n, 1))
    rows.append(measure("neowise", max(a.sheets), 2))
    print(f"{'survey':<12}{'sheets':>8}{'workers':>8}{'sheets/s':>10}{'per worker':>11}{'peak MB':>9}")
    for r in rows:
        print(f"{r['survey']:<12}{r['sheets']:>8}{r['workers']:>8}{r['sheets_per_s']:>10.0f}"
              f"{r['sheets_per_s_per_worker']:>11.0f}{r['peak_rss_mb']:>9.0f}")
    for survey in ("neowise", "neosurveyor"):
        one = [r for r in rows if r["survey"] == survey and r["workers"] == 1]
        if len(one) > 1:
            lo, hi = one[0], one[-1]
            print(f"{survey}: steady {(hi['sheets'] - lo['sheets']) / (hi['seconds'] - lo['seconds']):.0f} sheets/s "
                  f"per worker (from {lo['sheets']} to {hi['sheets']} sheets), fixed cost "
                  f"{lo['seconds'] - lo['sheets'] * (hi['seconds'] - lo['seconds']) / (hi['sheets'] - lo['sheets']):.1f} s")
    nw = [r for r in rows if r["survey"] == "neowise" and r["workers"] == 1]
    print(f"memory ratio {nw[-1]['sheets']}/{nw[0]['sheets']} sheets: {nw[-1]['peak_rss_mb'] / nw[0]['peak_rss_mb']:.2f} "
          "(1.0 = flat)")
    print(f"2-worker speed-up at {rows[-1]['sheets']} sheets: {rows[-1]['sheets_per_s'] / nw[-1]['sheets_per_s']:.2f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
