"""Resident memory of training a set model, with and without giving freed memory back
(``neoqa.memory``), side by side in one run, each fit in a process of its own.

PyTorch's CPU tensors of many shapes fragment glibc's heap, so a process's resident size climbs
through training; ``memory.Releaser`` calls ``malloc_trim(0)`` at most once a second in the
training loop. Usage (the default benchmark must exist: ``make run`` or ``neoqa simulate``):
python benchmarks/bench_memory.py [--data data/neowise-default] [--sheets 20000] [--model sneon] [--epochs 3]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np
from neoqa import memory
if sys.argv[1] == "off":
    memory.release = lambda: None
    memory.Releaser.tick = lambda self: None
    import neoqa.models.sets.loop as loop
    loop.release = memory.release
from neoqa.data.store import SheetSet
from neoqa.models.registry import make
from neoqa.train.fit import labelled_splits
batch = SheetSet(sys.argv[2]).read()
train, val = labelled_splits(batch.select(np.arange(min(int(sys.argv[3]), len(batch)))))
model = make(sys.argv[4]).set_params(epochs=int(sys.argv[5]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t = time.perf_counter()
model.fit(train, validation=val)
print(json.dumps({"release": sys.argv[1], "fit_s": round(time.perf_counter() - t, 1), "rss_before_fit_mb": round(before),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/neowise-default")
    ap.add_argument("--sheets", type=int, default=20000)
    ap.add_argument("--model", default="sneon")
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    rows = []
    for mode in ("off", "on"):
        run = subprocess.run([sys.executable, "-c", CHILD, mode, a.data, str(a.sheets), a.model, str(a.epochs)],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(run.stdout.strip().splitlines()[-1]))
        r = rows[-1]
        print(f"release {r['release']:>3}: fit {r['fit_s']:6.1f} s, resident {r['rss_before_fit_mb']:,} MB before the fit, "
              f"peak {r['peak_rss_mb']:,} MB (+{r['peak_rss_mb'] - r['rss_before_fit_mb']:,})", flush=True)


if __name__ == "__main__":
    main()
