"""One self-contained HTML report for a zoo run: the table, every figure, and explained
examples of true and false positives and negatives for the best model."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np

from neoqa import __version__
from neoqa.explain import saliency as explain
from neoqa import figures
from neoqa.models import persistence as persist
from neoqa.errors import NeoqaError
from neoqa.evaluate import tables
from neoqa.decide.triage import bucket_report, buckets, triage_thresholds
from neoqa.data.splits import TEST, VAL, labelled, split_of
from neoqa.models.base import capabilities
from neoqa.models.torch_forward import is_differentiable
from neoqa.outputs import FIGURE_MARK, atomic_output, safe_name, write_text
from neoqa.data.store import SheetSet
from neoqa.outputs import provenance, read_json
from neoqa.runs.zoo import fast_mover_lines, ranked

FIGURES = (("roc.png", "ROC curves on the test split"), ("confusion.png", "Confusion matrices"),
           ("reliability.png", "Reliability (calibration) on the test split"),
           ("accuracy_by_k.png", "Accuracy by number of observations"),
           ("accuracy_by.png", "Accuracy by rate of motion, true S/N and object class"))
CASES = (("TP", "true positive", 1, 1), ("FP", "false positive", 0, 1), ("FN", "false negative", 1, 0),
         ("TN", "true negative", 0, 0))


def _img(png: Path | bytes, alt: str) -> str:
    data = base64.b64encode(png if isinstance(png, bytes) else png.read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def pick_examples(model, info, batch) -> list[tuple]:
    """The most confident example of each case (TP, FP, FN, TN) on the test split, as (code, name,
    sheet id, score, note). Where the data has clean truth and that example's label is one of the
    flipped 2%, the note says so, and the most confident example the truth confirms follows it."""
    test = labelled(batch, TEST)
    p = model.predict_proba(test)[:, 1]
    d = (p >= info["threshold"]).astype(int)
    clean = test.truth_sheet["clean_label"] if test.truth_sheet is not None else None
    out = []
    for code, name, label, decision in CASES:
        idx = np.flatnonzero((test.label == label) & (d == decision))
        pick = (lambda i: i[np.argmax(p[i])]) if decision == 1 else (lambda i: i[np.argmin(p[i])])   # noqa: E731
        if not len(idx):
            continue
        best = pick(idx)
        flipped = clean is not None and clean[best] != label
        note = (f"the label is one of the flipped ones: the clean truth says {'real' if clean[best] == 1 else 'false'}, "
                "as the model does" if flipped else
                "the clean truth agrees with the label" if clean is not None else "")
        out.append((code, name, str(test.sheet_id[best]), float(p[best]), note))
        genuine = idx[clean[idx] == label] if flipped else []
        if len(genuine):
            g = pick(genuine)
            out.append((f"{code}-truth", f"{name} the clean truth confirms", str(test.sheet_id[g]), float(p[g]),
                        "the clean truth agrees with the label: a real error of the model"))
    return out


TRIAGE_RECALLS = (0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999)
TRIAGE_COLUMNS = (tables.Column("labels", "thresholds set on"), tables.Column("target_recall", "target recall %",
                                                                               tables.percent()),
                  tables.Column("human_load", "human load %", tables.percent()),
                  tables.Column("recall_outside_reject", "recall outside reject %", tables.percent(2)),
                  tables.Column("accept_precision", "accept precision %", tables.percent(2)),
                  tables.Column("counts", "accept / review / reject"))


def _triage_section(model, batch, name, fig_dir: Path) -> str:
    """Human load against target recall, thresholds set on validation with the labels and, for
    simulated data, with the clean truth; measured on the test split against the clean truth."""
    plt = figures.pyplot()

    split = split_of(batch.sheet_id)
    p = model.predict_proba(batch)[:, 1]
    val, test = (split == VAL) & (batch.label >= 0), (split == TEST) & (batch.label >= 0)
    truth = batch.truth_sheet["clean_label"] if batch.truth_sheet is not None else None
    label_sets = [("labels", batch.label)] + ([("clean truth", truth)] if truth is not None else [])
    judge = truth if truth is not None else batch.label
    rows, curves = [], {}
    for set_name, y in label_sets:
        loads = []
        for r in TRIAGE_RECALLS:
            hi, lo = triage_thresholds(y[val], p[val], r)
            rep = bucket_report(judge[test], buckets(p[test], hi, lo))
            loads.append(rep["human_load"])
            if r in (0.99, 0.995, 0.999):
                rows.append((set_name, r, rep))
        curves[set_name] = loads
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    for set_name, loads in curves.items():
        ax.plot([100 * r for r in TRIAGE_RECALLS], [100 * v for v in loads], marker="o", label=f"thresholds from {set_name}")
    ax.set_xlabel("target recall %"); ax.set_ylabel("sheets left for human review %")
    ax.set_title(f"Triage with {name}: human load"); ax.grid(alpha=0.3); ax.legend(fontsize=8)
    path = fig_dir / "triage_load.png"
    figures.save(fig, path, dpi=110)
    judged = "the clean truth" if truth is not None else "the labels"
    table = tables.html(TRIAGE_COLUMNS, [
        {"labels": set_name, "target_recall": r, "human_load": rep["human_load"],
         "recall_outside_reject": rep["recall_outside_reject"], "accept_precision": rep["accept_precision"],
         "counts": " / ".join(str(rep[b]["sheets"]) for b in ("accept", "review", "reject"))}
        for set_name, r, rep in rows])
    return (f"<h2>Triage: {html.escape(name)}</h2><p class='note'>Sheets scoring above the accept threshold are "
            "accepted automatically, below the reject threshold rejected automatically, the rest go to people. "
            "Thresholds come from the validation split; the outcome is measured on the test split against "
            f"{judged}. With 2% of labels flipped, thresholds set on the labels themselves must keep the mislabelled "
            "sheets too, which is why a clean label set matters.</p>" + table + _img(path, "triage load"))


def _fast_mover_section(summary: dict) -> str:
    """Recall of real sheets by object class and, for NEOs, by true rate: the survey exists to find
    the fast ones, so a model that learns "fast means false" must show here."""
    results = summary["models"]
    rows, bins = [], None
    for name, r in results.items():
        by = r.get("by", {})
        cls, rate = by.get("object_class"), by.get("neo_true_rate")
        if not cls or not rate:
            continue
        bins = bins or [k for k in rate if k != "not a NEO"]
        f = r.get("fast_movers") or {}
        rows.append({"model": name, **{c: cls.get(c, {}).get("recall_clean") for c in ("mba", "neo")},
                     **{f"neo {b}": rate.get(b, {}).get("recall_clean") for b in bins}, "gap": f.get("gap_points")})
    if not rows:
        return ""
    columns = ([tables.Column("model", "model"), tables.Column("mba", "real MBA recall %", tables.percent()),
                tables.Column("neo", "real NEO recall %", tables.percent())]
               + [tables.Column(f"neo {b}", f"NEO {b} deg/day %", tables.percent()) for b in bins]
               + [tables.Column("gap", "MBA - NEO points", tables.number("+.1f"))])
    text = " ".join(fast_mover_lines(summary)).strip()
    return ("<h2>Fast movers</h2><p class='note'>Recall at each model's threshold against the clean truth, for "
            "real sheets by the object's class and, for NEOs, by its true rate of motion. " + html.escape(text) +
            "</p>" + tables.html(columns, rows))


def _provenance_html(summary: dict, now: dict) -> str:
    """Where the run and this page came from: version, commit, date, data digest and command."""
    def line(what, p):
        return (f"{what} by neoqa {html.escape(str(p.get('neoqa_version')))}"
                f"{' (commit ' + html.escape(str(p['commit'])) + ')' if p.get('commit') else ''} on "
                f"{html.escape(str(p.get('date')))}: <code>{html.escape(str(p.get('command')))}</code>")
    run = summary.get("provenance")
    made = line("The run was made", run) if run else "The run records no provenance (made before neoqa 0.6.0)"
    digest = summary.get("data_digest")
    data = f"; data digest <code>{html.escape(digest)}</code>" if digest else ""
    return f"<p class='note'>{made}{data}. {line('This page was written', now)}.</p>"


def explainable(model) -> bool:
    """Whether ``neoqa explain`` draws ``model``: by its gradients, or trees by TreeSHAP."""
    return is_differentiable(model) or "tree_shap" in capabilities(model)


def write_report(run, samples: int = 32) -> Path:
    run = Path(run)
    summary = read_json(run / "results.json", "not a zoo run folder (no results.json)")
    results = summary.get("models") or {}
    if not results:
        raise NeoqaError(f"{run / 'results.json'}: holds no models")
    rank = ranked(results)
    best = rank[0]
    models = {n: persist.load(run / "models" / n) for n in results}
    explained_name = next((n for n in rank if explainable(models[n][0])), None)    # the best, unless it is an
    if explained_name is None:                                                    # ensemble (no explanation yet)
        raise NeoqaError(f"{run}: no model in this run can be explained (by gradients or TreeSHAP)")
    model, info = models[explained_name]
    batch = SheetSet(summary["data"]).read()
    examples = pick_examples(model, info, batch)
    # The report's own figures and page are regenerated on every run: replacing them is what
    # `neoqa report` is asked to do. The figures folder is swapped in whole, then the page.
    with atomic_output(run / "report_figures", overwrite=True, folder=True, kind="report figures") as fig_dir:
        explained = []
        for code, name, sid, p, note in examples:
            path = explain.explain_sheet(run / "models" / explained_name, summary["data"], sid,
                                         fig_dir / f"{code}_{safe_name(sid)}.png", samples=samples)
            explained.append((code, name, sid, p, note, path.read_bytes()))
        linear = []
        for name, (mdl, _) in models.items():
            if explain.linear_weights(mdl) is not None:
                path = explain.draw_linear_weights(run / "models" / name, fig_dir / f"weights_{safe_name(name)}.png")
                linear.append((name, path.read_bytes()))
        triage_html = _triage_section(models[best][0], batch, best, fig_dir)

    results_table = tables.html(tables.REPORT_TABLE, tables.model_rows(results, summary.get("paper", {})),
                                ["best" if name == best else None for name in results])
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta name='generator' content='{FIGURE_MARK} {__version__}'>",
        f"<title>neoqa run report: {html.escape(str(summary['data']))}</title>",
        "<style>body{font-family:sans-serif;max-width:1300px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}"
        "td:first-child{text-align:left}tr.best{background:#eef6ee;font-weight:bold}"
        "img{max-width:100%;border:1px solid #ddd;margin:6px 0}h2{border-bottom:1px solid #ccc}"
        ".note{color:#555;font-size:13px}</style></head><body>",
        "<h1>neoqa run report</h1>",
        f"<p>{summary['sheets']:,} {html.escape(str(summary['survey']))} sheets from "
        f"<code>{html.escape(str(summary['data']))}</code>; seed {summary['seed']}; zoo run time "
        f"{summary['total_seconds']:.0f} s. Best model by test accuracy: <b>{html.escape(best)}</b>.</p>",
        _provenance_html(summary, provenance()),
        "<h2>Results</h2><p class='note'>Percentages on the test split; accuracy against the noisy labels (as the "
        "paper) and against the clean truth. The paper's column was measured on the paper's real NEOWISE QA sheets, "
        "not on this data.</p>",
        results_table,
        "<h2>Figures</h2>",
    ]
    for fname, caption in FIGURES:
        if (run / fname).exists():
            parts.append(f"<h3>{caption}</h3>{_img(run / fname, caption)}")
    why = "" if explained_name == best else (f" (the best model, {html.escape(best)}, combines models of different "
                                             "kinds and has no explanation of its own; this is the best model that has "
                                             "one)")
    how = ("Bars are exact TreeSHAP contributions to the calibrated logit (LightGBM's own), each observation's "
           "gathered from the features that summarise it, red toward real and blue toward false."
           if "tree_shap" in capabilities(model) else
           "Red maps are SmoothGrad saliency (|gradient| of the logit with respect to the model's standardised "
           "inputs, averaged over noisy copies).")
    parts.append(triage_html)
    parts.append(_fast_mover_section(summary))
    parts.append(f"<h2>Explained examples: {html.escape(explained_name)}</h2><p class='note'>The most confident case "
                 f"of each kind on the test split{why}. {how}</p>")
    for code, name, sid, p, note, path in explained:
        parts.append(f"<h3>{name} ({code}): sheet {html.escape(sid)}, score {p:.3f}</h3>"
                     + (f"<p class='note'>{html.escape(note)}.</p>" if note else "") + _img(path, name))
    if linear:
        parts.append("<h2>Linear models' weights</h2>")
        for name, path in linear:
            parts.append(f"<h3>{html.escape(name)}</h3>{_img(path, name + ' weights')}")
    # Lets a test (or a person) confirm every image decoded: sets data-images-loaded on <body>.
    parts.append("<script>window.addEventListener('load',()=>{const i=[...document.images];"
                 "document.body.dataset.imagesLoaded=i.filter(x=>x.complete&&x.naturalWidth>0).length;"
                 "document.body.dataset.images=i.length;});</script></body></html>")
    out = run / "report.html"
    write_text(out, "\n".join(parts), overwrite=True)
    return out

