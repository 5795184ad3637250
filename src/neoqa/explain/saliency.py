"""Explanations: gradient saliency and SmoothGrad (captum) over every input, drawn as the
paper's Figure 2; linear models drawn as their weights; tree models by their exact TreeSHAP
contributions (``explain.trees``).

Attributions are gradients of the model's logit with respect to its standardised inputs
(see ``differentiable``): each observation's cutouts in both channels, the per-observation
scalars, the composite and the sheet scalars. SmoothGrad adds Gaussian noise of
``noise`` standard deviations of each input (so noise is scaled to each input's spread),
seeded, with the noisy samples batched so memory stays bounded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from neoqa import figures
from neoqa.models import persistence as persist
from neoqa.models.torch_forward import INPUT_NAMES, inputs_for, linear_weights
from neoqa.errors import NeoqaError
from neoqa.outputs import atomic_output, check_output, safe_name
from neoqa.explain.sheet import find_sheet
from neoqa.explain.trees import tree_figure
from neoqa.models.base import capabilities
from neoqa.data.store import SheetSet

MAX_ROWS = 10


def attribute(model, sheet, method="smoothgrad", samples=32, noise=0.15, batch=8, seed=0):
    """Attributions (absolute gradients) for each input of one sheet: dict name -> array."""
    from captum.attr import NoiseTunnel, Saliency

    si = inputs_for(model, sheet)
    inputs = tuple(t.clone().requires_grad_(True) for t in si.tensors)
    sal = Saliency(si.forward)
    torch.manual_seed(seed)
    if method == "saliency":
        attr = sal.attribute(inputs, abs=True)
    elif method == "smoothgrad":
        attr = NoiseTunnel(sal).attribute(inputs, nt_type="smoothgrad", nt_samples=samples,
                                          nt_samples_batch_size=batch, stdevs=noise, abs=True)
    else:
        raise NeoqaError(f"unknown attribution method {method!r} (saliency or smoothgrad)")
    with torch.no_grad():
        score = float(torch.sigmoid(si.forward(*si.tensors))[0])
    out = {name: a.detach().numpy()[0] for name, a in zip(INPUT_NAMES, attr)}
    out.update(score=score, order=si.order, confidences=si.confidences,
               inputs={name: t.numpy()[0] for name, t in zip(INPUT_NAMES, si.tensors)})
    return out


def explain_sheet(model_dir, data, sheet_id, out, method="smoothgrad", samples=32, seed=0,
                  overwrite: bool = False) -> Path:
    figures.check_format(out)
    check_output(out, overwrite=overwrite, inputs=(model_dir, data))
    model, info = persist.load(model_dir)
    sheet = find_sheet(data, sheet_id)
    sheet = persist.conform(model, info, sheet, str(data))
    return _draw(model, info, sheet, Path(out), method, samples, seed, overwrite=overwrite, inputs=(model_dir, data))


def explain_many(model_dir, data, out, sheet_ids, rows=None, method="smoothgrad", samples=32, seed=0,
                 overwrite: bool = False) -> list[Path]:
    """One figure per sheet of ``sheet_ids`` into the folder ``out``, which appears complete or not
    at all, read shard by shard (memory bounded by one shard). Each file is named by the sheet's id
    made safe (``outputs.safe_name``; the id itself is in the figure's title), and ``index.csv``
    lists them in the order given, with the columns of ``rows`` (one dict per id: the listing that
    chose them) where given. An id the data lacks is refused before anything is drawn."""
    import csv

    from neoqa.progress import progress_bar

    ids = [str(s) for s in dict.fromkeys(sheet_ids)]
    if not ids:
        raise NeoqaError(f"{data}: no sheets to explain")
    check_output(out, overwrite=overwrite, inputs=(model_dir, data), folder=True)
    model, info = persist.load(model_dir)
    shards = SheetSet(data)
    found = set()
    if rows is None:                                      # named ids: all exist before any figure is drawn
        wanted = set(ids)                                 # (a listing's ids came from the data itself)
        for shard in shards.iter_shards():
            found.update(wanted.intersection(map(str, shard.sheet_id)))
    else:
        found = set(ids)
    missing = [i for i in ids if i not in found]
    if missing:
        raise NeoqaError(f"{data}: sheet {missing[0]!r} not found" + (f" (and {len(missing) - 1} more)"
                                                                       if len(missing) > 1 else ""))
    names = {i: f"{safe_name(i)}.png" for i in ids}
    out = Path(out)
    with atomic_output(out, overwrite=overwrite, inputs=(model_dir, data), folder=True, kind="explanations") as tmp:
        bar = progress_bar(total=len(ids), desc="explain", unit="sheet")
        for shard in shards.iter_shards():
            hit = np.flatnonzero(np.isin(shard.sheet_id.astype(str), ids))
            if not len(hit):
                continue
            shard = persist.conform(model, info, shard.select(hit), str(data))
            for i in range(len(shard)):
                sheet = shard.select([i])
                _draw(model, info, sheet, tmp / names[str(sheet.sheet_id[0])], method, samples, seed)
                bar.update(1)
        bar.close()
        by_id = {str(r["sheet_id"]): r for r in rows or ()}
        extra = [k for k in (rows[0] if rows else {}) if k != "sheet_id"]
        with open(tmp / "index.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["rank", "sheet_id", "figure", *extra])
            for rank, i in enumerate(ids, 1):
                w.writerow([rank, i, names[i], *(by_id.get(i, {}).get(k, "") for k in extra)])
    return [out / names[i] for i in ids]


def draw_weights_into(model_dir, out, overwrite: bool = False) -> Path:
    """``draw_linear_weights`` as ``neoqa explain --weights`` does it: ``weights.png`` in the folder ``out``."""
    with atomic_output(out, overwrite=overwrite, inputs=(model_dir,), folder=True, kind="explanations") as tmp:
        draw_linear_weights(model_dir, tmp / "weights.png")
    return Path(out) / "weights.png"


def _draw(model, info, sheet, out: Path, method, samples, seed, overwrite=False, inputs=()) -> Path:
    figures.save(explanation_figure(model, info, sheet, method, samples, seed), out, dpi=100, overwrite=overwrite,
                 inputs=inputs)
    return out


def explanation_figure(model, info, sheet, method="smoothgrad", samples=32, seed=0):
    """The explanation of one sheet (a one-sheet ``SheetBatch``) by a loaded model, a matplotlib
    Figure: the paper's Figure 2 from gradient attributions, or trees' TreeSHAP contributions."""
    if "tree_shap" in capabilities(model):           # trees: exact attributions, not gradients
        return tree_figure(model, info, sheet)
    plt = figures.pyplot()

    a = attribute(model, sheet, method, samples, seed=seed)
    meta = sheet.meta
    ch = meta["channels"]
    k = int(sheet.k[0])
    rows = min(k, MAX_ROWS)
    conf = a["confidences"]
    fifth = None
    if conf is not None:
        valid = conf[:k]
        fifth = int(np.argsort(-valid, kind="stable")[min(4, k - 1)]) if k else None
    fig = plt.figure(figsize=(12.5, 1.25 * (rows + 1) + 1.2), constrained_layout=True)
    gs = fig.add_gridspec(rows + 1, 6, width_ratios=[1, 1, 1, 1, 0.15, 3.2])
    label = {1: "1 (real)", 0: "0 (false)", -1: "unknown"}[int(sheet.label[0])]
    fig.suptitle(f"Label: {label}, Score: {a['score']:.3f} for {sheet.sheet_id[0]}  "
                 f"({info['model']}, {method})", fontsize=11)
    # Images are shown as measured (less each cutout's median); saliency is with respect to
    # the model's standardised inputs.
    img = sheet.cutouts[a["order"]] - np.median(sheet.cutouts[a["order"]], axis=(2, 3), keepdims=True)
    sal = a["obs_images"]
    unused = not np.any(sal)
    # Rows to draw, in time order: all of them, or for a long set-model sheet the most
    # confident ones (which include the 5th-largest that set the decision).
    shown = np.arange(rows)
    if conf is not None and k > rows:
        shown = np.sort(np.argsort(-conf[:k], kind="stable")[:rows])
    for r, j in enumerate(shown):
        for c in range(2):
            ax = fig.add_subplot(gs[r, 2 * c])
            ax.imshow(img[j, c], origin="lower", cmap="gray")
            ax.set_xticks([]); ax.set_yticks([])
            if r == 0:
                ax.set_title(ch[c], fontsize=9)
            if c == 0:
                first = ax
            ax2 = fig.add_subplot(gs[r, 2 * c + 1])
            obs_map = ax2.imshow(sal[j, c], origin="lower", cmap="Reds", vmin=0, vmax=max(float(sal.max()), 1e-12))
            ax2.set_xticks([]); ax2.set_yticks([])
            if unused and r == 0 and c == 0:
                ax2.text(0.5, 0.5, "this model does not\nread the observations", ha="center", va="center",
                         fontsize=6, transform=ax2.transAxes)
            if r == 0:
                ax2.set_title(f"saliency {ch[c]}", fontsize=9)
        dt = sheet.obs_scalars[a["order"][j], sheet.obs_scalar_names.index("dt_hr")]
        text = f"{dt:.1f} h"
        if conf is not None:
            text += f"\nconf {conf[j]:+.2f}" + ("\n5th-largest" if j == fifth else "")
        first.set_ylabel(text, fontsize=7, rotation=0, ha="right", va="center")
    for c in range(2):
        ax = fig.add_subplot(gs[rows, 2 * c])
        ax.imshow(sheet.composite[0, c], origin="lower", cmap="gray")
        ax.set_xticks([]); ax.set_yticks([]); ax.set_xlabel(f"composite {ch[c]}", fontsize=8)
        ax2 = fig.add_subplot(gs[rows, 2 * c + 1])
        comp_map = ax2.imshow(a["composite"][c], origin="lower", cmap="Reds", vmin=0,
                              vmax=max(float(a["composite"].max()), 1e-12))
        ax2.set_xticks([]); ax2.set_yticks([]); ax2.set_xlabel("saliency", fontsize=8)
    # One scale for every observation's maps, one for the composite's (the spacer column holds them).
    for where, mappable, what in ((gs[:rows, 4], obs_map, "observations"), (gs[rows, 4], comp_map, "composite")):
        bar = fig.colorbar(mappable, cax=fig.add_subplot(where))
        bar.set_label(f"|gradient|, {what}", fontsize=7)
        bar.ax.tick_params(labelsize=6)
    ax = fig.add_subplot(gs[:, 5])
    ax.axis("off")
    ax.set_title("Most important scalars", fontsize=10)
    imp = [(f"{n} (sheet)", float(v)) for n, v in zip(sheet.sheet_scalar_names, a["sheet_scalars"])]
    obs_imp = a["obs_scalars"][:k].mean(0) if k else np.zeros(len(sheet.obs_scalar_names))
    imp += [(f"{n} (obs. mean)", float(v)) for n, v in zip(sheet.obs_scalar_names, obs_imp)]
    imp.sort(key=lambda t: -t[1])
    top = imp[:14]
    peak = max(top[0][1], 1e-12) if top else 1.0
    lines = [f"{name:<34s}{v / peak:6.2f}" for name, v in top]
    if k > rows:
        which = "most confident" if conf is not None else "first"
        lines.append(f"\n({which} {rows} of {k} observations shown, in time order)")
    ax.text(0, 0.97, "relative |gradient|, standardised inputs\n\n" + "\n".join(lines), va="top",
            family="monospace", fontsize=7.5, transform=ax.transAxes)
    return fig


def draw_linear_weights(model_dir, out, overwrite: bool = False) -> Path:
    """``weights_figure`` of a saved linear model, written to ``out``."""
    figures.check_format(out)
    check_output(out, overwrite=overwrite, inputs=(model_dir,))
    model, info = persist.load(model_dir)
    figures.save(weights_figure(model, info, where=str(model_dir)), out, dpi=100, overwrite=overwrite,
                 inputs=(model_dir,))
    return Path(out)


def weights_figure(model, info, where="model"):
    """A linear model's weights, a matplotlib Figure: images per channel and a bar chart of the
    scalar weights."""
    plt = figures.pyplot()
    w = linear_weights(model)
    if w is None:
        raise NeoqaError(f"{where}: model {info['model']!r} is not linear")
    schema = info["schema"]
    C, S = schema["channels"], schema["cutout_size"]
    coef = w["coef"]
    img, sc = coef[: C * S * S].reshape(C, S, S), coef[C * S * S:]
    channels = info["training_data"].get("channels") or [f"ch{c + 1}" for c in range(C)]
    fig = plt.figure(figsize=(12, 5), constrained_layout=True)
    gs = fig.add_gridspec(1, C + 1, width_ratios=[1] * C + [2.4])
    lim = float(np.abs(img).max())
    for c in range(C):
        ax = fig.add_subplot(gs[0, c])
        im = ax.imshow(img[c], origin="lower", cmap="RdBu_r", vmin=-lim, vmax=lim)
        ax.set_title(f"composite weights {channels[c]}", fontsize=9)
        ax.set_xticks([]); ax.set_yticks([])
    fig.colorbar(im, ax=fig.axes[:C], shrink=0.6, label="weight (standardised input)")
    ax = fig.add_subplot(gs[0, C])
    order = np.argsort(np.abs(sc))
    ax.barh(np.array(schema["sheet_scalars"])[order], sc[order], color=np.where(sc[order] > 0, "C3", "C0"))
    ax.set_xlabel("weight (standardised input; positive = toward real)")
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title("sheet-scalar weights", fontsize=9)
    fig.suptitle(f"{info['model']}: the linear model's weights", fontsize=11)
    return fig
