"""The `neoqa` command: each verb parses its arguments and calls one library function."""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import warnings
from pathlib import Path

from neoqa.errors import NeoqaError

BUCKET_NAMES = ("accept", "review", "reject")     # models.calibration.BUCKETS, without importing the models to parse


def _simulate(a):
    from neoqa.simulate import DEFAULT_PATH, DEFAULT_SHEETS, simulate

    out = Path(a.out) if a.out else DEFAULT_PATH
    settings = {}
    if a.positive_fraction is not None:
        settings["positive_fraction"] = a.positive_fraction
    if a.label_noise is not None:
        settings["label_noise"] = a.label_noise
    simulate(out, DEFAULT_SHEETS if a.sheets is None else a.sheets, seed=a.seed, survey=a.survey, workers=a.workers,
             progress=not a.quiet, overwrite=a.overwrite, **settings)
    _info_print(out, as_json=False)


def _info_print(path, as_json):
    from neoqa.data.info import format_text, summarize
    from neoqa.data.store import SheetSet

    s = summarize(SheetSet(path))
    print(json.dumps(s, indent=1) if as_json else format_text(s))


def _info(a):
    _info_print(a.data, a.json)


def _export(a):
    from neoqa.ingest.layout import export

    export(a.data, a.out, overwrite=a.overwrite)
    print(f"wrote {a.out}")


def _ingest(a):
    from neoqa.ingest.layout import ingest

    ingest(a.data, a.out, survey=a.survey, overwrite=a.overwrite, columns=a.columns)
    _info_print(a.out, as_json=False)


def _show(a):
    from neoqa.explain.sheet import show_sheet

    out = show_sheet(a.data, a.sheet, a.out, overwrite=a.overwrite)
    print(f"wrote {out}")


def _train(a):
    from neoqa.parallel import ddp
    from neoqa.train.fit import train_path

    rank, world = ddp.init() if ddp.launched() else (0, 1)     # torchrun: one of `world` processes
    try:
        res = train_path(a.kind, a.data, a.out, seed=a.seed, overwrite=a.overwrite)
    finally:
        ddp.close()
    if rank == 0:
        v = res["validation"]
        how = (f"validation accuracy {v['accuracy']:.1%} on {v['sheets']:,} sheets at threshold {res['threshold']:.3f}"
               if v else "no validation sheets of both classes: threshold 0.5")
        print(f"wrote {a.out}: {a.kind}, {how}; fitted in {res['fit_seconds']:.1f} s"
              + (f" on {world} processes" if world > 1 else ""))


def _list(a):
    from neoqa.decide.listing import list_sheets, listing_text

    rows = list_sheets(a.data, a.model, a.bucket, a.errors, a.split, a.limit)
    if a.json:
        print(json.dumps(rows, indent=1))
    elif rows:
        print(listing_text(rows))
    else:
        print("no sheets match", file=sys.stderr)


def _evaluate(a):
    from neoqa.evaluate.evaluation import evaluate_path, evaluation_text

    res = evaluate_path(a.model, a.data, a.split, a.bootstrap, a.seed)
    print(json.dumps(res, indent=1, sort_keys=True) if a.json else "\n".join(evaluation_text(res)))


def _zoo(a):
    from neoqa.runs.zoo import run_zoo

    run_zoo(a.data, a.out, models=a.kinds, seed=a.seed, overwrite=a.overwrite)
    print((Path(a.out) / "results.md").read_text())


def _score(a):
    from neoqa.decide.score import score

    m = score(a.model, a.data, a.out, overwrite=a.overwrite, scheduler=a.scheduler, workers=a.workers,
              threads=a.threads)
    counts = ", ".join(f"{n:,} {b}" for b, n in m["buckets"].items()) if m["operating_point"] else "no operating point"
    parts = f"{len(m['parts'])} part" + ("s" if len(m["parts"]) != 1 else "")
    print(f"scored {m['sheets']:,} sheets in {parts} ({m['made']} made, {m['skipped']} already done; "
          f"{counts}): wrote {a.out}")


def _night(a):
    from neoqa.runs.night import NightConfig, night

    cfg = NightConfig.read(a.config)
    if a.threads is None and cfg.threads is not None:
        from neoqa.threads import set_budget

        set_budget(cfg.threads)
    s = night(a.config, overwrite=a.overwrite, progress=not a.quiet)
    b = s["buckets"]
    print(f"night: {s['sheets']:,} sheets, {b['accept']:,} accepted, {b['review']:,} to review "
          f"(human load {s['human_load']:.1%}), {b['reject']:,} rejected; wrote {cfg.out} in {s['seconds']:.1f} s")


def _explain(a):
    from neoqa.decide.listing import explain_listed
    from neoqa.explain.saliency import draw_weights_into

    if a.weights:
        print(f"wrote {draw_weights_into(a.model, a.out, overwrite=a.overwrite)}")
        return
    if not a.data:
        raise NeoqaError("explain needs --data (or --weights for a linear model's weights)")
    if not (a.sheet or a.errors or a.bucket or a.all):
        raise NeoqaError("explain needs --sheet ID, --errors, --bucket BUCKET or --all (which sheets to explain)")
    paths = explain_listed(a.model, a.data, a.out, sheets=a.sheet or (), errors=a.errors, bucket=a.bucket,
                           split=a.split, limit=a.limit, method=a.method, samples=a.samples, seed=a.seed,
                           overwrite=a.overwrite)
    print(f"wrote {len(paths)} figure{'s' if len(paths) != 1 else ''} and index.csv to {a.out}")


def _report(a):
    from neoqa.runs.report import write_report

    print(f"wrote {write_report(a.run, samples=a.samples)}")


def _threshold(a):
    from neoqa.evaluate.thresholds import operating_point

    res = operating_point(a.model, a.data, a.recall, n_boot=a.bootstrap, seed=a.seed, save=a.save, labels=a.labels)
    if a.json:
        print(json.dumps(res, indent=1))
        return
    lo, hi = res["threshold_ci95"]
    print(f"threshold for {a.recall:.2%} recall (validation): {res['threshold']:.4f}  (95% CI {lo:.4f}..{hi:.4f})")
    print(f"  validation: recall {res['validation']['recall']:.4f}, false-positive rate {res['validation']['fpr']:.4f}")
    flo, fhi = res["test_fpr_ci95"]
    print(f"  test:       recall {res['test']['recall']:.4f}, false-positive rate {res['test']['fpr']:.4f} "
          f"(95% CI {flo:.4f}..{fhi:.4f})")
    if "test_clean" in res:
        print(f"  test, clean truth: recall {res['test_clean']['recall']:.4f}, "
              f"false-positive rate {res['test_clean']['fpr']:.4f}")
    if a.save:
        print(f"  saved as the model's decision threshold in {Path(a.model) / 'model.json'}")


def _triage(a):
    from neoqa.decide.triage import BUCKET_TABLE, BUCKETS, triage
    from neoqa.evaluate.tables import markdown

    res = triage(a.model, a.data, a.out, recall=a.recall, precision=a.precision, labels=a.labels, save=a.save,
                 n_boot=a.bootstrap, seed=a.seed, overwrite=a.overwrite)
    if a.json:
        print(json.dumps(res, indent=1))
        return
    op = res["operating_point"]
    how = (f"set for {op['target_recall']:.2%} recall and {op['target_precision']:.2%} precision on "
           f"{op['set_on'].get('data', '?')} ({op['set_on'].get('labels', '?')} labels)")
    print(f"accept p >= {op['accept_above']:.4f}, reject p < {op['reject_below']:.4f}: {how}")
    counts = res["buckets"]
    print(f"  {res['sheets']:,} sheets: " + ", ".join(f"{counts[b]:,} {b}" for b in BUCKETS)
          + f"; human load {res['human_load']:.1%}")
    for key, title in (("test", "test split, labels"), ("test_clean", "test split, clean truth"),
                       ("labelled", "labelled sheets"), ("labelled_clean", "labelled sheets, clean truth")):
        if key not in res:
            continue
        r = res[key]
        print(f"  {title}: human load {r['human_load']:.1%} of {r['sheets']} sheets; "
              f"recall outside reject {r['recall_outside_reject']:.4f}; accept precision {r['accept_precision']:.4f}")
        by = r.get("recall_outside_reject_by_class")
        if by:
            print("    recall outside reject by class: " + ", ".join(f"{c} {v:.4f}" for c, v in by.items()))
        print("\n".join("    " + line for line in markdown(BUCKET_TABLE, [{"bucket": b, **r[b]} for b in BUCKETS])))
    if a.out:
        print(f"wrote {a.out}")
    if a.save:
        print(f"saved the operating point in {res['saved_in']}")


def _robustness(a):
    from neoqa.shift.robustness import run_robustness

    run_robustness(a.model, a.data, a.out, corruptions=a.corruptions, seed=a.seed, max_sheets=a.sheets,
                   overwrite=a.overwrite)
    print((Path(a.out) / "robustness.md").read_text())
    print(f"figure: {Path(a.out) / 'robustness.png'}")


def _finetune(a):
    from neoqa.shift.transfer import finetune_path

    print(f"wrote {finetune_path(a.model, a.data, _labelled(a.labelled), a.out, seed=a.seed, adapt=not a.keep_normalisation, overwrite=a.overwrite)}")


def _labelled(value):
    """A number of labelled sheets, or all of them."""
    if str(value) == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        raise NeoqaError(f"--labelled must be a number of sheets or 'all', not {value!r}") from None
    if n < 1:
        raise NeoqaError(f"--labelled must be at least 1 (got {n})")
    return n


def _learning_curve(a):
    from neoqa.shift.transfer import learning_curve

    learning_curve(a.model, a.data, a.out, labels=[_labelled(v) for v in a.labelled], seeds=range(a.seeds),
                   overwrite=a.overwrite)
    print((Path(a.out) / "learning_curve.md").read_text())
    print(f"figure: {Path(a.out) / 'learning_curve.png'}")


def _update(a):
    from neoqa.shift.online import update_path

    state = update_path(a.model, a.data, a.out, replay_from=a.replay_data, size=a.replay_size, seed=a.seed,
                        unlabelled=a.unlabelled_data, overwrite=a.overwrite)
    print(f"wrote {a.out}: update {state['updates']}, replay buffer {state['replay_sheets']} of "
          f"{state['replay_seen']} sheets seen")


def _stream(a):
    from neoqa.shift.online import stream

    stream(a.model, a.data, a.old_data, a.out, batches=a.batches, batch_size=a.batch_size, size=a.replay_size,
           seed=a.seed, overwrite=a.overwrite)
    print((Path(a.out) / "stream.md").read_text())
    print(f"figure: {Path(a.out) / 'stream.png'}")


def _suspects(a):
    from neoqa.shift.suspects import find_suspects

    s = find_suspects(a.data, a.out, name=a.kind, folds=a.folds, seed=a.seed, prune=a.prune, overwrite=a.overwrite)
    print(f"wrote {a.out}: {s['sheets']:,} labelled sheets ranked, {s['flagged']:,} flagged by confident learning")
    t = s.get("against_truth")
    if t:
        print(f"  against the clean truth: {t['wrong_labels']} labels are wrong; flagged precision "
              f"{t['flagged_precision']:.3f}, recall {t['flagged_recall']:.3f}; average precision "
              f"{t['average_precision']:.3f}")
        for k, v in t["at_k"].items():
            print(f"    top {k:>5}: precision {v['precision']:.3f}  recall {v['recall']:.3f}")
    if a.prune:
        print(f"wrote {a.prune}: {s['pruned']['sheets']:,} sheets, the flagged ones removed")


def _main_job(a):
    """The README's first command: the default benchmark (cached), the zoo, the table, the report."""
    from neoqa.runs.main import main_job

    main_job(a.out, workers=a.workers)


# ------------------------------------------------------------------ argument types
def _positive_int(text):
    """A whole number of at least 1."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {v}")
    return v


def _int(text):
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, not {text!r}") from None


def _number(text) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, not {text!r}") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text!r}")
    return v


def _rate(text):
    """A recall or precision target in (0, 1]."""
    v = _number(text)
    if not 0 < v <= 1:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], not {v:g}")
    return v


def _fraction(text):
    """A fraction in [0, 1]."""
    v = _number(text)
    if not 0 <= v <= 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], not {v:g}")
    return v


class _Parser(argparse.ArgumentParser):
    """Usage mistakes are one line (which verb, which argument, what is wrong) and exit status 2."""

    epilog_fn = None                        # builds the epilog when help is printed, not at every parse

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def format_help(self):
        if self.epilog_fn is not None:
            self.epilog = self.epilog_fn()
        return super().format_help()


# Shared flags: one meaning each, whatever the verb (README's command table; tests/test_cli_language.py).
_HELP = {
    "data": "the dataset: a neoqa dataset folder (or one shard)",
    "model": "a model folder (neoqa train writes one)",
    "seed": "the seed: the same seed gives the same result",
    "json": "print the result as JSON",
    "labels": "the labels thresholds are set on: noisy (the default), clean (the truth of simulated data), or "
              "a suspects .csv (the labels less the sheets it flags)",
    "bootstrap": "resamples for the bootstrap intervals",
}


def _overwrite(s):
    s.add_argument("--overwrite", action="store_true",
                   help="replace an existing output (only one neoqa wrote; the old one stays whole until the new is complete)")


def _data(s, required=True, help=None):
    s.add_argument("--data", required=required, metavar="PATH", help=help or _HELP["data"])


def _model(s, required=True, help=None):
    s.add_argument("--model", required=required, metavar="DIR", help=help or _HELP["model"])


def _seed(s, of=None):
    s.add_argument("--seed", type=_int, default=0, metavar="N", help=_HELP["seed"] + (f" ({of})" if of else ""))


def _json(s):
    s.add_argument("--json", action="store_true", help=_HELP["json"])


def _kind_help() -> str:
    from neoqa.models import registry

    width = max(map(len, registry.ORDER))
    return "models (--kind):\n" + "\n".join(f"  {n:<{width}}  {registry.SUMMARIES[n]}" for n in registry.ORDER)


def build_parser() -> argparse.ArgumentParser:
    from neoqa import __version__

    p = _Parser(prog="neoqa", description="Vetting of moving-object QA sheets (NEOWISE, NEO Surveyor).")
    p.add_argument("--version", action="version", version=f"neoqa {__version__}", help="print the version and exit")
    sub = p.add_subparsers(dest="verb", required=True, parser_class=_Parser, metavar="VERB")

    s = sub.add_parser("simulate", help="simulate QA sheets (default: the NEOWISE benchmark)")
    s.add_argument("--survey", choices=["neowise", "neosurveyor"], default="neowise", help="the instrument (default neowise)")
    s.add_argument("--sheets", type=_positive_int, default=None, help="number of sheets (default 40000)")
    _seed(s)
    s.add_argument("--out", default=None, help="the dataset folder to write (default data/neowise-default)")
    s.add_argument("--workers", type=_positive_int, default=1, help="processes writing shards in parallel")
    s.add_argument("--positive-fraction", type=_fraction, default=None, help="share of real sheets (default 0.23)")
    s.add_argument("--label-noise", type=_fraction, default=None, help="share of flipped labels (default 0.02)")
    _overwrite(s)
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_simulate)

    s = sub.add_parser("info", help="summarise a dataset")
    _data(s)
    _json(s)
    s.set_defaults(func=_info)

    s = sub.add_parser("export", help="write a dataset as FITS cutouts plus Parquet tables (docs/format.md)")
    _data(s)
    s.add_argument("--out", required=True, help="the folder to write the FITS files and tables into")
    _overwrite(s)
    s.set_defaults(func=_export)

    s = sub.add_parser("ingest", help="read FITS cutouts plus tables (docs/format.md) into a dataset")
    _data(s, help="the folder of FITS cutouts and tables to read (the layout export writes)")
    s.add_argument("--out", required=True, help="the dataset folder to write")
    s.add_argument("--survey", default=None, help="survey name if neither the tables nor the FITS headers say")
    s.add_argument("--columns", default=None, metavar="FILE|neowise",
                   help="rename the tables' columns to neoqa's first: a TOML mapping file (docs/own-data.md) or "
                        "'neowise' for the NEOWISE single-exposure source table's names (w1snr, w1mpro, ...)")
    _overwrite(s)
    s.set_defaults(func=_ingest)

    s = sub.add_parser("show", help="draw one sheet as a vetter sees it")
    _data(s)
    s.add_argument("--sheet", required=True, help="the sheet's id (neoqa list prints them)")
    s.add_argument("--out", required=True, help="the figure to write (.png, .pdf or .svg)")
    _overwrite(s)
    s.set_defaults(func=_show)

    s = sub.add_parser("train", help="train one model", formatter_class=argparse.RawDescriptionHelpFormatter)
    s.epilog_fn = _kind_help                # the models are imported only to print this
    s.add_argument("--kind", required=True, metavar="KIND", help="the model to train (listed below)")
    _data(s)
    s.add_argument("--out", required=True, help="the model folder to write")
    _seed(s)
    _overwrite(s)
    s.set_defaults(func=_train)

    s = sub.add_parser("evaluate", help="a saved model's rates, with 95%% intervals, on one split of labelled data")
    _model(s)
    _data(s)
    s.add_argument("--split", choices=("test", "validation", "train", "all"), default="test",
                   help="the labelled sheets to evaluate on (default test; all: every labelled sheet, for data "
                        "the model never saw)")
    s.add_argument("--bootstrap", type=_int, default=200, help=_HELP["bootstrap"] + " of the AUCs and FPRs (0: none)")
    _seed(s, "of the bootstrap")
    _json(s)
    s.set_defaults(func=_evaluate)

    s = sub.add_parser("list", help="list sheet ids (with a model: probabilities, buckets, its mistakes)")
    _data(s)
    _model(s, required=False, help="a model folder: adds each sheet's probability and bucket")
    s.add_argument("--bucket", choices=BUCKET_NAMES, default=None,
                   help="only the sheets the model's saved operating point puts in this bucket")
    s.add_argument("--errors", action="store_true",
                   help="only labelled sheets the model decides wrongly at its threshold, most confident first")
    s.add_argument("--split", choices=("train", "validation", "test", "all"), default="all",
                   help="only the sheets of this split (default all)")
    s.add_argument("--limit", type=_positive_int, default=None, help="at most this many rows")
    _json(s)
    s.set_defaults(func=_list)

    s = sub.add_parser("zoo", help="train and evaluate every registered model")
    _data(s)
    s.add_argument("--out", required=True, help="the run folder: models, results.{md,csv,json}, figures")
    s.add_argument("--kinds", nargs="+", metavar="KIND", default=None,
                   help="only these models (default all; neoqa train --help lists them)")
    _seed(s)
    _overwrite(s)
    s.set_defaults(func=_zoo)

    s = sub.add_parser("score", help="score a dataset shard by shard into a folder of Parquet parts")
    _model(s)
    _data(s)
    s.add_argument("--out", required=True,
                   help="a folder: one part-NNNNN.parquet per shard and _manifest.json; a rerun skips finished parts")
    where = s.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None,
                       help="run the per-shard tasks on the Dask cluster at this address (tcp://host:8786); "
                            "the workers must see --model, --data and --out at the same paths")
    where.add_argument("--workers", type=_positive_int, default=None,
                       help="run them on a local Dask cluster of this many processes, sharing --threads")
    _overwrite(s)
    s.set_defaults(func=_score)

    s = sub.add_parser("night", help="the nightly job a config file describes: sheets, scores, review queue, summary")
    s.add_argument("config", help="a TOML file (docs/night.md)")
    _overwrite(s)
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=_night)

    s = sub.add_parser("explain", help="saliency and SmoothGrad over every input of a sheet (the paper's Figure 2); "
                                       "trees (gbdt) by exact TreeSHAP contributions")
    _model(s)
    _data(s, required=False, help=_HELP["data"] + " holding the sheets to explain")
    which = s.add_argument_group("which sheets (one of)")
    which.add_argument("--sheet", action="append", metavar="ID", help="this sheet (repeat for more)")
    which.add_argument("--errors", action="store_true",
                       help="the labelled sheets the model decides wrongly, most confident first")
    which.add_argument("--bucket", choices=BUCKET_NAMES, default=None,
                       help="the sheets the model's saved operating point puts in this bucket (review: what people see)")
    which.add_argument("--all", action="store_true", help="the sheets in file order")
    which.add_argument("--weights", action="store_true", help="no sheet: a linear model's weights (weights.png)")
    s.add_argument("--split", choices=("train", "validation", "test", "all"), default="all",
                   help="choose only among this split's sheets (default all)")
    s.add_argument("--limit", type=_positive_int, default=20, help="at most this many sheets (default 20)")
    s.add_argument("--method", choices=["smoothgrad", "saliency"], default="smoothgrad",
                   help="gradient attribution (trees always use TreeSHAP)")
    s.add_argument("--samples", type=_positive_int, default=32, help="SmoothGrad noisy samples")
    _seed(s, "of SmoothGrad's noise")
    s.add_argument("--out", required=True,
                   help="a folder: one PNG per sheet, named by its id, and index.csv listing them in order")
    _overwrite(s)
    s.set_defaults(func=_explain)

    s = sub.add_parser("threshold", help="the threshold that keeps a target recall (validation), with a bootstrap CI")
    _model(s)
    _data(s, help=_HELP["data"] + ", labelled (its validation split sets the threshold)")
    s.add_argument("--recall", type=_rate, required=True, help="the recall to keep, in (0, 1]")
    s.add_argument("--bootstrap", type=_positive_int, default=1000, help=_HELP["bootstrap"])
    _seed(s, "of the bootstrap")
    s.add_argument("--save", action="store_true", help="make it the model's decision threshold")
    s.add_argument("--labels", default="noisy", help=_HELP["labels"])
    _json(s)
    s.set_defaults(func=_threshold)

    s = sub.add_parser("triage", help="split sheets into auto-accept, human review and auto-reject")
    _model(s)
    _data(s)
    s.add_argument("--recall", type=_rate, default=None,
                   help="set an operating point for this recall on the data's validation split (labelled data); "
                        "without it, the model's saved operating point buckets the sheets (no labels needed)")
    s.add_argument("--precision", type=_rate, default=None, help="of automatic accepts (default: the recall)")
    s.add_argument("--labels", default="noisy", help=_HELP["labels"])
    s.add_argument("--save", action="store_true", help="store the operating point in the model folder")
    s.add_argument("--bootstrap", type=_positive_int, default=1000, help=_HELP["bootstrap"] + " of the thresholds")
    _seed(s, "of the bootstrap")
    s.add_argument("--out", default=None, help="the bucket of every sheet, a Parquet file")
    _json(s)
    _overwrite(s)
    s.set_defaults(func=_triage)

    s = sub.add_parser("report", help="one self-contained HTML report for a zoo run")
    s.add_argument("--run", required=True, help="a folder written by neoqa zoo (report.html is written into it)")
    s.add_argument("--samples", type=_positive_int, default=32, help="SmoothGrad noisy samples per explained example")
    s.set_defaults(func=_report)

    s = sub.add_parser("robustness", help="accuracy, TPR and TNR of saved models under corruptions of the test split")
    s.add_argument("--model", required=True, nargs="+", action="extend", help="model folder(s)")
    _data(s)
    s.add_argument("--out", required=True, help="folder for robustness.{md,csv,json,png}")
    s.add_argument("--corruptions", nargs="+", help="a subset of the corruptions (default: all)")
    s.add_argument("--sheets", type=_positive_int, help="score a seeded subset of this many test sheets")
    _seed(s)
    _overwrite(s)
    s.set_defaults(func=_robustness)

    s = sub.add_parser("finetune", help="fine-tune a saved model on N labelled sheets of new-survey data")
    _model(s)
    _data(s, help="the new survey's dataset (its training split is used)")
    s.add_argument("--labelled", required=True, help="how many of its labelled sheets to learn from, or 'all'")
    s.add_argument("--out", required=True, help="the new model folder")
    _seed(s)
    s.add_argument("--keep-normalisation", action="store_true",
                   help="keep the old input normalisation (default: re-fit it on the new unlabelled sheets)")
    _overwrite(s)
    s.set_defaults(func=_finetune)

    s = sub.add_parser("learning-curve", help="fine-tuned against from-scratch accuracy for N labelled new-survey sheets")
    _model(s)
    _data(s, help="the new survey's dataset")
    s.add_argument("--out", required=True, help="folder for learning_curve.{md,json,png}")
    s.add_argument("--labelled", nargs="+", default=["10", "100", "1000"],
                   help="the numbers of labelled sheets to learn from (default 10 100 1000)")
    s.add_argument("--seeds", type=_positive_int, default=3, help="seeded draws of the labelled sheets per N")
    _overwrite(s)
    s.set_defaults(func=_learning_curve)

    s = sub.add_parser("update", help="update a saved model from a new labelled batch (online learning with replay)")
    _model(s)
    _data(s, help="the new labelled batch (every labelled sheet is used)")
    s.add_argument("--out", required=True, help="the updated model folder")
    s.add_argument("--replay-data", metavar="PATH", help="the model's training data, to start its replay buffer on a first update")
    s.add_argument("--replay-size", type=_positive_int, default=2000, help="sheets the replay buffer keeps")
    s.add_argument("--unlabelled-data", metavar="PATH", help="sheets of the batch's survey (labels unused) to fit its input statistics "
                                             "on when the model meets that survey for the first time (default: the batch)")
    _seed(s)
    _overwrite(s)
    s.set_defaults(func=_update)

    s = sub.add_parser("stream", help="online learning over a stream of new-survey batches; forgetting measured")
    _model(s)
    _data(s, help="the new survey's dataset")
    s.add_argument("--old-data", metavar="PATH", required=True, help="the data the model was trained on")
    s.add_argument("--out", required=True, help="folder for stream.{md,json,png}")
    s.add_argument("--batches", type=_positive_int, default=5, help="batches in the stream")
    s.add_argument("--batch-size", type=_positive_int, default=500, help="labelled sheets per batch")
    s.add_argument("--replay-size", type=_positive_int, default=2000, help="sheets the replay buffer keeps")
    _seed(s)
    _overwrite(s)
    s.set_defaults(func=_stream)

    s = sub.add_parser("suspects", help="rank sheets whose labels are likely wrong (cross-validated confident learning)")
    _data(s)
    s.add_argument("--out", required=True, help="the ranked table, a .csv (a .json summary is written beside it)")
    s.add_argument("--kind", default="gbdt", metavar="KIND",
                   help="the model cross-validated (default gbdt: fast and strong; neoqa train --help lists them)")
    s.add_argument("--folds", type=_positive_int, default=5, help="cross-validation folds")
    _seed(s)
    s.add_argument("--prune", help="also write the dataset without the flagged sheets here (to train on)")
    _overwrite(s)
    s.set_defaults(func=_suspects)

    s = sub.add_parser("main", help="the README's main job on the embedded default data")
    s.add_argument("--workers", type=_positive_int, default=2, help="processes simulating the default data")
    s.add_argument("--out", default="runs/zoo", help="the run folder (default runs/zoo)")
    s.set_defaults(func=_main_job)
    for verb in sub.choices.values():
        if "--quiet" not in verb._option_string_actions:
            verb.add_argument("--quiet", action="store_true", help="no progress bars (what the command prints stays)")
        verb.add_argument("--threads", type=_positive_int, default=None, metavar="N",
                          help="threads every pool (BLAS, OpenMP, torch, LightGBM) may run (default: the cores this "
                               "process may use; two jobs sharing a machine should split them)")
        for action in verb._actions:             # usage lines say what kind of value a flag takes
            if action.option_strings and action.metavar is None and action.nargs != 0:
                if action.type in (_int, _positive_int):
                    action.metavar = "N"
                elif action.dest in ("out", "prune", "run"):
                    action.metavar = "PATH"
    return p


class _Stopped(KeyboardInterrupt):
    """SIGTERM (or SIGHUP), raised in the main thread so every temporary output is removed on the way out."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def _stop(signum, frame):
    raise _Stopped(signum)


def _unraisable(hook):
    """A stop raised inside a callback Python cannot raise from (a weakref or __del__) is swallowed
    there: send the signal again, so it lands at the next ordinary point of the program."""
    def handle(u):
        if isinstance(u.exc_value, _Stopped):  # from a thread, a moment later: not inside this hook again
            import threading

            t = threading.Timer(0.02, os.kill, (os.getpid(), u.exc_value.signum))
            t.daemon = True
            t.start()
        else:
            hook(u)
    return handle


def _one_line(text) -> str:
    return " ".join(str(text).split())


def _close_progress() -> None:
    """End any progress bar left open by the failure, so the error starts a line of its own."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


# Flags renamed in 0.7.0 for one command language: the old spelling gets a one-line pointer.
_RENAMED = {("train", "--model"): "--kind NAME (--model is always a model folder)",
            ("suspects", "--model"): "--kind NAME (--model is always a model folder)",
            ("export", "--to"): "--out DIR", ("zoo", "--models"): "--kinds NAME ...",
            ("finetune", "--labels"): "--labelled N", ("learning-curve", "--labels"): "--labelled N ...",
            ("update", "--replay-from"): "--replay-data PATH", ("update", "--unlabelled"): "--unlabelled-data PATH"}
_WAS_POSITIONAL = ("info", "export", "ingest", "show")


def _renamed(argv) -> str | None:
    """What an argument list written for neoqa 0.6 should now say, or None."""
    argv = [str(a) for a in argv]
    if not argv:
        return None
    verb = argv[0]
    for arg in argv[1:]:
        new = _RENAMED.get((verb, arg.split("=")[0]))
        if new:
            return f"neoqa {verb}: {arg.split('=')[0]} is now {new} (see neoqa {verb} --help)"
    if verb in _WAS_POSITIONAL and len(argv) > 1 and not argv[1].startswith("-"):
        return f"neoqa {verb}: the dataset is now given as --data {argv[1]} (see neoqa {verb} --help)"
    return None


def main(argv=None) -> int:
    moved = _renamed(sys.argv[1:] if argv is None else argv)
    if moved:
        print(f"neoqa: error: {moved}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(argv)
    from neoqa.outputs import record_command

    record_command(sys.argv[1:] if argv is None else argv)
    from neoqa.threads import set_budget

    set_budget(args.threads)                 # before any library starts its pool
    from neoqa.progress import set_quiet

    set_quiet(args.quiet)
    import tqdm

    tqdm.tqdm.monitor_interval = 0           # no daemon thread writing to stderr while the process exits
    handlers, unraisable = {}, sys.unraisablehook
    sys.unraisablehook = _unraisable(unraisable)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            handlers[sig] = signal.signal(sig, _stop)
        except ValueError:                   # not the main thread (an embedding program): leave signals alone
            pass
    try:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                args.func(args)
        except BaseException:
            _close_progress()
            raise
    except NeoqaError as e:
        print(f"neoqa: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except MemoryError:
        print("neoqa: error: out of memory (try a smaller dataset or fewer workers)", file=sys.stderr)
        return 2
    except BrokenPipeError:                 # output piped into head, say: not an error of ours
        sys.stdout = open(os.devnull, "w")
        return 0
    except OSError as e:                    # a full or read-only disk, a vanished file: the path and the reason
        where = f"{e.filename}: " if e.filename else ""
        print(f"neoqa: error: {where}{_one_line(e.strerror or e)}; nothing partial was kept", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"neoqa: {'interrupted' if signum == signal.SIGINT else 'terminated'}; nothing partial was kept",
              file=sys.stderr)
        return 128 + int(signum)
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)
        sys.unraisablehook = unraisable
    return 0


if __name__ == "__main__":
    sys.exit(main())
