"""Summaries of a dataset: what `neoqa info` prints."""

from __future__ import annotations

import numpy as np

from neoqa.data.store import SheetSet


def summarize(sheets: SheetSet) -> dict:
    """Counts and provenance, read shard by shard (images are not loaded)."""
    import h5py

    n, pos, vetted, noisy, k_hist, m, located = 0, 0, 0, 0, {}, 0, 0
    have_truth = bool(sheets.meta.get("has_truth"))
    for path in sheets.shard_paths:
        with h5py.File(path, "r") as f:
            label = f["sheets/label"][()]
            k = f["sheets/k"][()]
            n += len(label)
            pos += int((label == 1).sum())
            vetted += int((label >= 0).sum())
            if have_truth:                   # among the vetted: an unlabelled sheet is no label error
                noisy += int(((label != f["truth/sheets/clean_label"][()]) & (label >= 0)).sum())
            m += int(k.sum())
            if "obs/wcs" in f:               # shards from before 0.8.0 have none
                located += int(np.isfinite(f["obs/wcs"][()]).all(axis=1).sum())
            for value, count in zip(*np.unique(k, return_counts=True)):
                k_hist[int(value)] = k_hist.get(int(value), 0) + int(count)
    return {
        "path": str(sheets.path),
        "sheets": n,
        "labelled": vetted,
        "real": pos,
        "positive_fraction": pos / vetted if vetted else None,     # of the labelled sheets
        "k_min": min(k_hist) if k_hist else None,
        "k_max": max(k_hist) if k_hist else None,
        "k_histogram": {str(key): k_hist[key] for key in sorted(k_hist)},
        "survey": sheets.meta["survey"],
        "channels": sheets.meta["channels"],
        "pixel_scale_arcsec": sheets.meta["pixel_scale_arcsec"],
        "cutout_size": sheets.meta["cutout_size"],
        "sheet_scalars": sheets.meta["sheet_scalars"],
        "obs_scalars": sheets.meta["obs_scalars"],
        "label_noise_rate": (noisy / vetted if vetted else None) if have_truth else None,
        "observations": m,
        "observations_with_wcs": located,
        "shards": len(sheets.shard_paths),
        "provenance": sheets.meta["provenance"],
    }


def _labels_line(s: dict) -> str:
    unlabelled = s["sheets"] - s["labelled"]
    if not s["labelled"]:
        return f"  labels: none ({unlabelled:,} sheets not vetted)"
    line = (f"  labels: {s['real']:,} real and {s['labelled'] - s['real']:,} false ({s['positive_fraction']:.1%} real)"
            + (f", {unlabelled:,} not vetted" if unlabelled else ""))
    if s["label_noise_rate"] is not None:
        return line + f"; {s['label_noise_rate']:.1%} of the labels differ from the clean truth"
    return line + " (no truth: real data)"


def _wcs_words(s: dict) -> str:
    if s["observations_with_wcs"] == s["observations"]:
        return "known for every observation (neoqa show draws a compass)"
    if not s["observations_with_wcs"]:
        return "not recorded (neoqa show cannot orient the cutouts)"
    return f"known for {s['observations_with_wcs']:,} of {s['observations']:,} observations"


def format_text(s: dict) -> str:
    lines = [
        f"{s['path']}: {s['sheets']} sheets in {s['shards']} shard(s), survey {s['survey']}",
        _labels_line(s),
        f"  channels: {', '.join(s['channels'])}; cutouts {s['cutout_size']}x{s['cutout_size']} px at {s['pixel_scale_arcsec']}\"/px",
        f"  cutouts' WCS: {_wcs_words(s)}",
        f"  k: {s['k_min']}..{s['k_max']}",
    ]
    peak = max(s["k_histogram"].values()) if s["k_histogram"] else 1
    for key, count in s["k_histogram"].items():
        lines.append(f"    k={int(key):>3} {count:>8}  {'#' * max(1, round(40 * count / peak))}")
    lines.append(f"  sheet scalars ({len(s['sheet_scalars'])}): {', '.join(s['sheet_scalars'])}")
    lines.append(f"  observation scalars ({len(s['obs_scalars'])}): {', '.join(s['obs_scalars'])}")
    prov = s["provenance"] or {}
    made = ", ".join(f"{k}={v}" for k, v in prov.items() if k != "config")
    lines.append(f"  made by: {made or 'unknown'}")
    return "\n".join(lines)
