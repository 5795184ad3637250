"""Draw a QA sheet as a vetter sees it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neoqa import figures
from neoqa.errors import NeoqaError
from neoqa.data.schema import OBJECT_CLASSES, SCENARIOS, SOURCE_KINDS
from neoqa.data.store import SheetSet

MAX_COLUMNS = 12
KEY_SCALARS = ("k", "rate_deg_per_day", "position_angle_deg", "fit_rms_arcsec", "snr_median_ch1",
               "snr_median_ch2", "color_ch1_ch2", "chi2_median", "composite_snr_ch2", "galactic_lat_deg")


def _stretch(img):
    """zscale limits with a linear stretch, the usual way to look at survey cutouts."""
    from astropy.visualization import ImageNormalize, LinearStretch, ZScaleInterval

    return ImageNormalize(img, interval=ZScaleInterval(contrast=0.15), stretch=LinearStretch())


def find_sheet(path, sheet_id):
    for batch in SheetSet(path).iter_shards():
        hit = np.flatnonzero(batch.sheet_id == sheet_id)
        if len(hit):
            return batch.select(hit)
    raise NeoqaError(f"{path}: sheet {sheet_id!r} not found")


def show_sheet(path, sheet_id: str, out, overwrite: bool = False) -> Path:
    """``neoqa show``: ``sheet_figure`` of one sheet of a dataset, written to ``out``."""
    from neoqa.outputs import check_output

    figures.check_format(out)
    check_output(out, overwrite=overwrite, inputs=(path,))
    fig = sheet_figure(find_sheet(path, sheet_id))
    out = Path(out)
    figures.save(fig, out, dpi=110, overwrite=overwrite, inputs=(path,))
    return out


def sheet_figure(b):
    """One sheet (a one-sheet ``SheetBatch``) as a vetter sees it: a matplotlib Figure."""
    plt = figures.pyplot()
    meta = b.meta
    ch = meta["channels"]
    k = int(b.k[0])
    order = np.argsort(b.mjd, kind="stable")
    cols = min(k, MAX_COLUMNS)
    fig = plt.figure(figsize=(1.25 * cols + 5.2, 4.6), constrained_layout=True)
    gs = fig.add_gridspec(3, cols + 3, height_ratios=[1, 1, 0.55], width_ratios=[1] * cols + [0.25, 1.6, 2.6])
    dt = b.obs_scalar("dt_hr")
    snr = b.obs_scalars[:, [b.obs_scalar_names.index("snr_ch1"), b.obs_scalar_names.index("snr_ch2")]]
    kinds = b.truth_obs["source_kind"] if b.truth_obs is not None else None
    for col, j in enumerate(order[:cols]):
        for c in range(2):
            ax = fig.add_subplot(gs[c, col])
            img = b.cutouts[j, c] - np.median(b.cutouts[j, c])
            ax.imshow(img, origin="lower", cmap="gray", norm=_stretch(img))
            ax.set_xticks([]); ax.set_yticks([])
            if c == 0:
                ax.set_title(f"{dt[j]:.1f} h", fontsize=8)
            if col == 0:
                ax.set_ylabel(ch[c], fontsize=9)
            ax.text(0.03, 0.03, f"{snr[j, c]:.1f}", color="yellow", fontsize=6, transform=ax.transAxes)
        ax = fig.add_subplot(gs[2, col])
        ax.axis("off")
        if kinds is not None:
            name = SOURCE_KINDS[kinds[j]].replace("_", "\n")
            ax.text(0.5, 0.9, name, ha="center", va="top", fontsize=6,
                    color="green" if kinds[j] == 0 else "red", transform=ax.transAxes)
    for c in range(2):
        ax = fig.add_subplot(gs[c, cols + 1])
        ax.imshow(b.composite[0, c], origin="lower", cmap="gray", norm=_stretch(b.composite[0, c]))
        ax.set_xticks([]); ax.set_yticks([])
        ax.set_title(f"composite {ch[c]}", fontsize=8)
    ax = fig.add_subplot(gs[:, cols + 2])
    ax.axis("off")
    rows = [f"{name:<20s}{b.sheet_scalar(name)[0]:>9.3g}" for name in KEY_SCALARS]
    text = [f"sheet {b.sheet_id[0]}  ({meta['survey']})", f"label: {'REAL' if b.label[0] == 1 else 'FALSE' if b.label[0] == 0 else 'unknown'}"]
    if b.truth_sheet is not None:
        t = b.truth_sheet
        text.append(f"truth: {'real' if t['clean_label'][0] else 'false'}, {SCENARIOS[t['scenario'][0]]}, "
                    f"{OBJECT_CLASSES[t['object_class'][0]]}")
        text.append(f"object detections: {t['n_object_obs'][0]} of {k}")
        if np.isfinite(t["diameter_km"][0]):
            text.append(f"D={t['diameter_km'][0]:.2f} km  r={t['r_au'][0]:.2f} AU  SNR={t['true_snr'][0]:.1f}")
    if k > cols:
        text.append(f"(first {cols} of {k} observations shown)")
    ax.text(0, 1, "\n".join(text + [""] + rows), va="top", ha="left", family="monospace", fontsize=7.5,
            transform=ax.transAxes)
    return fig
