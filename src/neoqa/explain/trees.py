"""Exact explanations of tree models (TreeSHAP, computed by LightGBM itself): each engineered
feature's additive contribution to the sheet's logit, mapped back to the observations it
summarises and to the composite's pixels, and drawn like the gradient explanations.

A summary feature is a statistic of the observations (``features.views.summary``); its contribution
goes to the observations the statistic picks: the r-th largest S/N to that observation, a maximum
or minimum to the one that attains it, a median to the middle one (or shared by the two middle
ones), a mean or spread shared by all with a value. Contributions are divided by the model's
temperature, so they add up to the calibrated logit: expected value + sum = logit, p = sigmoid.
"""

from __future__ import annotations


import numpy as np

from neoqa import figures
from neoqa.data.schema import LABEL_MIN_OBS
from neoqa.features import views as features
from neoqa.models.calibration import Calibrated, unwrap

TOP = 14              # features listed
MAX_ROWS = 10         # observations drawn


def tree_attributions(model, sheet) -> dict:
    """TreeSHAP for one sheet: the features' names, values and contributions (calibrated logit
    units), the expected value, the logit and score, and the contributions gathered per
    observation (in time order), per composite pixel (the central 5 x 5 of each channel) and per
    sheet scalar."""
    if len(sheet) != 1:
        raise ValueError("tree_attributions takes exactly one sheet")
    base = unwrap(model)
    t = float(model.temperature) if isinstance(model, Calibrated) else 1.0
    raw = base.contributions(sheet)[0] / t
    contrib, expected = raw[:-1], float(raw[-1])
    names = base.feature_names(sheet)
    values = features.summary(sheet)[0]
    order = features.time_order(sheet)
    ns, C = len(sheet.sheet_scalar_names), sheet.composite.shape[1]
    side = 2 * features.CENTRE + 1
    comp = contrib[ns:ns + C * side * side].reshape(C, side, side)
    per_obs = np.zeros(int(sheet.k[0]))
    col = ns + C * side * side
    for name in features.SUMMARY_RANKED:
        v = np.nan_to_num(sheet.obs_scalar(name)[order], nan=-np.inf)
        ranked = np.argsort(-v, kind="stable")
        for r in range(features.SUMMARY_TOP):
            if r < len(ranked) and np.isfinite(v[ranked[r]]):
                per_obs[ranked[r]] += contrib[col]
            col += 1
    for name, stat, _ in features.SUMMARY_STATS:
        picked = _picked(sheet.obs_scalar(name)[order], stat)
        if len(picked):
            per_obs[picked] += contrib[col] / len(picked)
        col += 1
    logit = expected + float(contrib.sum())
    return {"names": names, "values": values, "contrib": contrib, "expected": expected, "logit": logit,
            "score": float(model.predict_proba(sheet)[0, 1]), "order": order, "per_obs": per_obs,
            "composite": comp, "sheet_scalars": contrib[:ns], "label_rule": int(sheet.k[0]) < LABEL_MIN_OBS}


def _picked(v: np.ndarray, stat: str) -> np.ndarray:
    """The observations a statistic of ``v`` is made from: its argmax, argmin, middle one(s), or all
    with a value (mean, spread)."""
    ok = np.flatnonzero(np.isfinite(v))
    if len(ok) == 0:
        return ok
    if stat == "max":
        return ok[[int(np.argmax(v[ok]))]]
    if stat == "min":
        return ok[[int(np.argmin(v[ok]))]]
    if stat == "median":
        s = ok[np.argsort(v[ok], kind="stable")]
        n = len(s)
        return s[[n // 2]] if n % 2 else s[[n // 2 - 1, n // 2]]
    return ok


def tree_figure(model, info, sheet):
    """The explanation figure of a tree model for one sheet: observations with their contributions,
    the composite with its pixels', and the features that moved the logit most, signed."""
    plt = figures.pyplot()
    a = tree_attributions(model, sheet)
    ch = sheet.meta.get("channels") or ["ch1", "ch2"]
    k = int(sheet.k[0])
    rows = min(k, MAX_ROWS)
    shown = np.sort(np.argsort(-np.abs(a["per_obs"]), kind="stable")[:rows]) if k > rows else np.arange(rows)
    fig = plt.figure(figsize=(13, 1.15 * (rows + 1) + 1.6), constrained_layout=True)
    gs = fig.add_gridspec(rows + 1, 5, width_ratios=[1, 1, 1.6, 0.25, 4.2])
    label = {1: "1 (real)", 0: "0 (false)", -1: "not vetted"}[int(sheet.label[0])]
    fig.suptitle(f"{sheet.sheet_id[0]}: label {label}, P(real) {a['score']:.3f}  ({info['model']}, TreeSHAP: "
                 f"exact contributions to the calibrated logit)", fontsize=11)
    img = sheet.cutouts[a["order"]] - np.median(sheet.cutouts[a["order"]], axis=(2, 3), keepdims=True)
    dt = sheet.obs_scalar("dt_hr")[a["order"]] if "dt_hr" in sheet.obs_scalar_names else np.full(k, np.nan)
    lim = max(float(np.abs(a["per_obs"]).max()) if k else 0.0, 1e-6)
    for r, j in enumerate(shown):
        for c in range(2):
            ax = fig.add_subplot(gs[r, c])
            ax.imshow(img[j, c], origin="lower", cmap="gray")
            ax.set_xticks([]); ax.set_yticks([])
            if r == 0:
                ax.set_title(ch[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(f"{dt[j]:.1f} h", fontsize=8, rotation=0, ha="right", va="center")
        ax = fig.add_subplot(gs[r, 2])
        v = a["per_obs"][j]
        ax.barh([0], [v], color="C3" if v > 0 else "C0", height=0.6)
        ax.set_xlim(-lim * 1.15, lim * 1.15)
        ax.axvline(0, color="0.3", lw=0.8)
        ax.set_yticks([])
        ax.text(0.98 if v < 0 else 0.02, 0.5, f"{v:+.2f}", transform=ax.transAxes, fontsize=8, va="center",
                ha="right" if v < 0 else "left")
        ax.tick_params(axis="x", labelsize=7, labelbottom=(r == rows - 1))
        if r == 0:
            ax.set_title("observation's contribution", fontsize=9)
    cl = max(float(np.abs(a["composite"]).max()), 1e-6)
    for c in range(2):
        ax = fig.add_subplot(gs[rows, c])
        ax.imshow(sheet.composite[0, c], origin="lower", cmap="gray")
        ax.set_xticks([]); ax.set_yticks([]); ax.set_xlabel(f"composite {ch[c]}", fontsize=8)
    ax = fig.add_subplot(gs[rows, 2])
    both = np.concatenate([a["composite"][0], np.full((a["composite"].shape[1], 1), np.nan), a["composite"][1]], 1)
    im = ax.imshow(both, origin="lower", cmap="RdBu_r", vmin=-cl, vmax=cl)
    ax.set_xticks([]); ax.set_yticks([])
    ax.set_xlabel(f"central pixels' contributions ({ch[0]} | {ch[1]})", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.08, pad=0.02).ax.tick_params(labelsize=7)
    ax = fig.add_subplot(gs[:, 4])
    top = np.argsort(-np.abs(a["contrib"]), kind="stable")[:TOP][::-1]
    vals = a["contrib"][top]
    ax.barh(np.arange(len(top)), vals, color=np.where(vals > 0, "C3", "C0"))
    ax.set_yticks(np.arange(len(top)))
    ax.set_yticklabels([f"{a['names'][i]} = {a['values'][i]:.3g}" for i in top], fontsize=8)
    ax.axvline(0, color="0.3", lw=0.8)
    ax.set_xlabel("contribution to the logit (red: toward real, blue: toward false)", fontsize=9)
    rest = float(a["contrib"].sum() - vals.sum())
    note = (f"expected {a['expected']:+.2f} + these {vals.sum():+.2f} + the other {len(a['contrib']) - len(top)} "
            f"{rest:+.2f} = logit {a['logit']:+.2f}")
    if a["label_rule"]:
        note += f"\nfewer than {LABEL_MIN_OBS} observations: the label rule sets P(real) = 0"
    ax.set_title(note, fontsize=8.5)
    if k > rows:
        fig.text(0.01, 0.005, f"the {rows} observations of {k} with the largest contributions, in time order",
                 fontsize=8)
    return fig
