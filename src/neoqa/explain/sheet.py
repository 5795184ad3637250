"""Draw a QA sheet as a vetter sees it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from neoqa import figures
from neoqa.errors import NeoqaError
from neoqa.data.schema import OBJECT_CLASSES, SCENARIOS, SOURCE_KINDS
from neoqa.data.sky import cutout_wcs
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


def _first_wcs(b):
    """The astropy WCS of the sheet's first cutout in time, or None where it is not known."""
    w = b.wcs[int(np.argmin(b.mjd))]
    return cutout_wcs(w) if np.isfinite(w).all() else None


def _orientation(b, wcs):
    """(north, east, what they rest on): unit vectors in the composite's pixels (x right, y up) at
    its centre, from the first cutout's ``wcs`` (local north and east, so a cutout far from its
    tangent point, or a team's rotated one, gets its own compass); for simulated data written before
    the WCS was stored, north up and east left (the simulator's tangent-plane pixels); None where the
    data cannot say."""
    if wcs is not None:
        S = b.composite.shape[-1]
        centre = wcs.pixel_to_world_values((S - 1) / 2, (S - 1) / 2)
        step = 10.0 / 3600                             # 10" along the meridian and the parallel
        dirs = []
        for dra, ddec in ((0.0, step), (step / np.cos(np.radians(centre[1])), 0.0)):
            x, y = wcs.world_to_pixel_values(centre[0] + dra, centre[1] + ddec)
            v = np.array([x - (S - 1) / 2, y - (S - 1) / 2])
            dirs.append(v / np.linalg.norm(v))
        return dirs[0], dirs[1], "from the cutouts' WCS"
    if (b.meta.get("provenance") or {}).get("generator") == "neoqa.simulate":
        return np.array([0.0, 1.0]), np.array([-1.0, 0.0]), "north up, east left\n(tangent-plane pixels)"
    return None


def _motion(b, wcs, north, east):
    """The fitted motion's direction in the composite's pixels: the detections placed in the first
    cutout's pixels by its ``wcs`` and a line fitted to them over time; without a WCS, the sheet's
    position angle on the compass. None where neither is known."""
    if wcs is not None and len(b.mjd) > 1 and np.ptp(b.mjd) > 0:
        x, y = wcs.world_to_pixel_values(b.ra, b.dec)
        t = b.mjd - b.mjd.mean()
        v = np.array([np.dot(t, x - x.mean()), np.dot(t, y - y.mean())])
    elif "position_angle_deg" in b.sheet_scalar_names:
        pa = np.radians(float(b.sheet_scalar("position_angle_deg")[0]))
        v = np.sin(pa) * east + np.cos(pa) * north
    else:
        return None
    n = np.linalg.norm(v)
    return v / n if np.isfinite(n) and n > 0 else None


def _scalar(b, name):
    """An observation scalar by name, or None where the data lacks it (own data)."""
    return b.obs_scalar(name) if name in b.obs_scalar_names else None


def sheet_figure(b):
    """One sheet (a one-sheet ``SheetBatch``) as a vetter sees it, a matplotlib Figure: each
    observation's cutouts in time order with its S/N, the S/N against time in every band, the
    composite with the fitted motion and the compass (where the cutouts' WCS or the simulator
    says how they lie on the sky), and the sheet's position,
    label, truth and key scalars."""
    plt = figures.pyplot()
    meta = b.meta
    ch = list(meta["channels"])
    C = b.cutouts.shape[1]
    k = int(b.k[0])
    order = np.argsort(b.mjd, kind="stable")
    cols = min(k, MAX_COLUMNS)
    fig = plt.figure(figsize=(1.15 * cols + 6.6, 1.25 * C + 2.9), constrained_layout=True)
    gs = fig.add_gridspec(C + 1, cols + 2, height_ratios=[1] * C + [1.1], width_ratios=[1] * cols + [1.8, 3.0])
    dt = _scalar(b, "dt_hr")
    dt = (b.mjd - b.mjd.min()) * 24.0 if dt is None else dt
    snr = [_scalar(b, f"snr_ch{c + 1}") for c in range(C)]
    detect = meta.get("detect_snr")
    kinds = b.truth_obs["source_kind"] if b.truth_obs is not None else None
    for col, j in enumerate(order[:cols]):
        for c in range(C):
            ax = fig.add_subplot(gs[c, col])
            img = b.cutouts[j, c] - np.median(b.cutouts[j, c])
            ax.imshow(img, origin="lower", cmap="gray", norm=_stretch(img))
            ax.set_xticks([]); ax.set_yticks([])
            if c == 0:
                kind = SOURCE_KINDS[kinds[j]].replace("_", " ") if kinds is not None else ""
                ax.set_title(f"{dt[j]:.1f} h" + (f"\n{kind}" if kind else ""), fontsize=8,
                             color="C2" if kinds is not None and kinds[j] == 0 else "black")
            if col == 0:
                ax.set_ylabel(ch[c], fontsize=10)
            if snr[c] is not None:
                v = float(snr[c][j])
                ax.text(0.04, 0.04, f"S/N {v:.1f}", color="white", fontsize=7.5, transform=ax.transAxes,
                        fontweight="bold" if detect is not None and v >= detect else "normal",
                        bbox={"boxstyle": "round,pad=0.15", "fc": "black", "alpha": 0.55, "lw": 0})
    ax = fig.add_subplot(gs[C, :cols])
    for c in range(C):
        if snr[c] is not None:
            ax.plot(dt[order], snr[c][order], marker="os^"[c % 3], ms=4, lw=1, label=ch[c])
    if detect is not None:
        ax.axhline(detect, color="0.5", ls="--", lw=0.8, label=f"detection threshold (S/N {detect:g})")
    ax.set_xlabel("hours since the first observation", fontsize=9)
    ax.set_ylabel("S/N of the linked detection", fontsize=9)
    ax.tick_params(labelsize=8); ax.grid(alpha=0.3)
    ax.legend(fontsize=7.5, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    if kinds is not None:
        ax.set_title("titles: what truly made each detection (green: the object)", fontsize=8, loc="left")
    wcs = _first_wcs(b)
    orientation = _orientation(b, wcs)
    S = b.composite.shape[-1]
    names = b.sheet_scalar_names
    pa = float(b.sheet_scalar("position_angle_deg")[0]) if "position_angle_deg" in names else np.nan
    rate = float(b.sheet_scalar("rate_deg_per_day")[0]) if "rate_deg_per_day" in names else np.nan
    motion = _motion(b, wcs, *orientation[:2]) if orientation is not None else None
    for c in range(C):
        ax = fig.add_subplot(gs[c, cols])
        ax.imshow(b.composite[0, c], origin="lower", cmap="gray", norm=_stretch(b.composite[0, c]))
        ax.set_xticks([]); ax.set_yticks([])
        ax.set_title(f"composite {ch[c]}", fontsize=9)
        if orientation is None:
            continue
        if c == 0 and motion is not None:      # the fitted motion, through the composite's centre
            d, mid = motion * 0.36 * S, (S - 1) / 2
            ax.annotate("", xy=(mid + d[0], mid + d[1]), xytext=(mid - d[0], mid - d[1]),
                        arrowprops={"arrowstyle": "-|>", "color": "C1", "lw": 1.6, "alpha": 0.9})
        if c == C - 1:                         # the compass, in the lower right corner
            x0, y0, L = S - 3.2, 3.2, 2.6
            for v, word in ((orientation[0], "N"), (orientation[1], "E")):
                ax.annotate("", xy=(x0 + L * v[0], y0 + L * v[1]), xytext=(x0, y0),
                            arrowprops={"arrowstyle": "-|>", "color": "C0", "lw": 1.2})
                ax.text(x0 + 1.35 * L * v[0], y0 + 1.35 * L * v[1], word, color="C0", fontsize=8, ha="center",
                        va="center", fontweight="bold")
    ax = fig.add_subplot(gs[C, cols])
    ax.axis("off")
    ax.text(0, 1, f"compass {orientation[2]},\n{meta.get('pixel_scale_arcsec', '?')}\" per pixel" if orientation
            else "orientation not recorded\nin the data: no compass", va="top", fontsize=7.5, transform=ax.transAxes)
    ax = fig.add_subplot(gs[:, cols + 1])
    ax.axis("off")
    label = {1: "REAL", 0: "FALSE"}.get(int(b.label[0]), "not vetted")
    first = order[0]
    text = [f"sheet {b.sheet_id[0]}  ({meta['survey']})", f"label: {label}",
            f"RA {b.ra[first]:.5f}  Dec {b.dec[first]:+.5f} deg",
            f"  (first detection, MJD {b.mjd[first]:.5f})",
            f"{k} observations over {float(np.ptp(b.mjd)) * 24:.1f} h"]
    if np.isfinite(rate) and np.isfinite(pa):
        text.append(f"motion {rate:.3g} deg/day at PA {pa:.0f} deg" + (" (arrow)" if motion is not None else ""))
    if b.truth_sheet is not None:
        t = b.truth_sheet
        text.append(f"truth: {'real' if t['clean_label'][0] else 'false'}, {SCENARIOS[t['scenario'][0]]}, "
                    f"{OBJECT_CLASSES[t['object_class'][0]]}")
        text.append(f"object detections: {t['n_object_obs'][0]} of {k}")
        if np.isfinite(t["diameter_km"][0]):
            text.append(f"D={t['diameter_km'][0]:.2f} km  r={t['r_au'][0]:.2f} AU  SNR={t['true_snr'][0]:.1f}")
    if k > cols:
        text.append(f"(first {cols} of {k} observations shown)")
    rows = [f"{name:<20s}{b.sheet_scalar(name)[0]:>9.3g}" for name in KEY_SCALARS if name in names]
    ax.text(0, 1, "\n".join(text + [""] + rows), va="top", ha="left", family="monospace", fontsize=8,
            transform=ax.transAxes)
    return fig
