"""The simulated populations against their sources: one table, one seeded sample.

Prints, for the NEOWISE-like (and optionally NEO-Surveyor-like) benchmark, the numbers the
benchmark's validity rests on: where the real NEO and main-belt sheets' objects are (distance,
rate, size, H), how fast chance and artifact tracklets move, and how well the rate of motion
alone separates real from false sheets (its single-scalar ROC AUC: a benchmark where it is near 1
teaches models that fast movers are false). The sample is ``simulate_batch`` at seed 0, so two
versions compared with this script see the same settings. Usage:
    python benchmarks/check_populations.py [--sheets 5000] [--survey neowise]
"""

from __future__ import annotations

import argparse

import numpy as np

from neoqa.data.schema import SCENARIOS
from neoqa.simulate import SimConfig, simulate_batch
from neoqa.simulate.thermal import C_HG


def auc(score, label):
    """ROC AUC of one scalar (the larger-is-real or larger-is-false orientation, whichever is better)."""
    from sklearn.metrics import roc_auc_score

    a = roc_auc_score(label, score)
    return max(a, 1 - a)


def rows(batch):
    t = batch.truth_sheet
    real = t["clean_label"] == 1
    cls = t["object_class"]
    rate = t["true_rate_deg_per_day"]
    h = 5 * np.log10(C_HG / (t["diameter_km"] * np.sqrt(t["albedo"])))
    out = []
    for name, sel in (("real NEO", real & (cls == 2)), ("real main belt", real & (cls == 1))):
        out += [
            (f"{name} sheets", f"{sel.sum()}"),
            (f"{name}: median distance (AU)", f"{np.median(t['delta_au'][sel]):.2f}"),
            (f"{name}: share under 0.6 AU", f"{np.mean(t['delta_au'][sel] < 0.6):.0%}"),
            (f"{name}: median rate (deg/day)", f"{np.median(rate[sel]):.2f}"),
            (f"{name}: share at 0.5-1.4 deg/day", f"{np.mean((rate[sel] >= 0.5) & (rate[sel] <= 1.4)):.0%}"),
            (f"{name}: share at 0.17-0.40 deg/day", f"{np.mean((rate[sel] >= 0.17) & (rate[sel] <= 0.40)):.0%}"),
            (f"{name}: median diameter (km)", f"{np.median(t['diameter_km'][sel]):.2f}"),
            (f"{name}: share larger than 10 km", f"{np.mean(t['diameter_km'][sel] > 10):.0%}"),
            (f"{name}: median H", f"{np.median(h[sel]):.1f}"),
            (f"{name}: median true S/N", f"{np.median(t['true_snr'][sel]):.1f}"),
        ]
    measured = batch.sheet_scalar("rate_deg_per_day")
    pa = batch.sheet_scalar("position_angle_deg")
    for scen in ("chance", "artifact"):
        sel = t["scenario"] == SCENARIOS.index(scen)
        lo, med, hi = np.percentile(measured[sel], [10, 50, 90])
        out.append((f"{scen} sheets: measured rate, 10/50/90% (deg/day)", f"{lo:.2f} / {med:.2f} / {hi:.2f}"))
        west = np.mean((pa[sel] > 225) & (pa[sel] < 315))
        out.append((f"{scen} sheets: share moving west (PA 225-315; a uniform disk gives 25%)", f"{west:.0%}"))
        out.append((f"{scen} sheets: median k", f"{np.median(batch.k[sel]):.0f}"))
    out += [
        ("single-scalar AUC of the measured rate, real vs false", f"{auc(measured, t['clean_label']):.3f}"),
        ("single-scalar AUC of k, real vs false", f"{auc(batch.k, t['clean_label']):.3f}"),
        ("real sheets (clean)", f"{real.mean():.1%}"),
        ("median k, real sheets", f"{np.median(batch.k[real]):.0f}"),
        ("share of real sheets with k 8-12", f"{np.mean((batch.k[real] >= 8) & (batch.k[real] <= 12)):.0%}"),
    ]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sheets", type=int, default=5000)
    ap.add_argument("--survey", default="neowise")
    args = ap.parse_args(argv)
    batch = simulate_batch(SimConfig(survey=args.survey), args.sheets, seed=0)
    print(f"| {args.survey}, {args.sheets} sheets, seed 0 | value |\n|---|---|")
    for key, value in rows(batch) + truth_rows(args.survey):
        print(f"| {key} | {value} |")


def truth_rows(survey, batches=4):
    """The share of candidate sheets whose label the matching rule changes (a detection on an
    object that the linker did not link as the object's): a measure of detections landing on objects."""
    from neoqa.simulate import instruments
    from neoqa.simulate.generator import simulate_candidates

    inst, cfg = instruments.get(survey), SimConfig(survey=survey)
    rng = np.random.default_rng(5)
    old, new = [], []
    for _ in range(batches):
        diag = {}
        b = simulate_candidates(rng, inst, cfg, 2048, diagnostics=diag)
        old.append(diag["clean_label_linked_only"])
        new.append(b.truth_sheet["clean_label"])
    old, new = np.concatenate(old), np.concatenate(new)
    return [("sheets whose truth the matching rule changes (false to real)", f"{np.mean(old != new):.2%}")]


if __name__ == "__main__":
    main()
