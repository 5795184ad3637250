"""The model card: ``MODEL.md`` beside every ``model.json``, written from it (Mitchell et al. 2019,
"Model Cards for Model Reporting"): what the model is, what it was trained on, how well it did on
data it did not train on, what it is for and where it is not to be trusted. A colleague reads it
before trusting a model; ``model.json`` stays the machine's record."""

from __future__ import annotations

from neoqa.models.registry import SUMMARIES
from neoqa.outputs import FIGURE_MARK


def _pct(v) -> str:
    return f"{100 * v:.2f}%" if isinstance(v, (int, float)) else "-"


def _made(info: dict) -> list[str]:
    prov = info.get("provenance") or {}
    lines = [f"- neoqa {info.get('neoqa_version', '?')}"
             + (f", commit {prov['commit']}" if prov.get("commit") else "")
             + (f", {prov['date']}" if prov.get("date") else "")]
    if prov.get("command"):
        lines.append(f"- command: `{prov['command']}`")
    bits = [f"seed {info['seed']}" if "seed" in info else None,
            f"{info['n_parameters']:,} parameters" if isinstance(info.get("n_parameters"), int) else None,
            f"fitted in {info['fit_seconds']:.1f} s" if isinstance(info.get("fit_seconds"), (int, float)) else None,
            f"on {info['processes']} processes" if (info.get("processes") or 1) > 1 else None]
    if any(bits):
        lines.append("- " + ", ".join(b for b in bits if b))
    for key, what in (("finetuned_from", "fine-tuned from"), ("updated_from", "updated (online learning) from")):
        if info.get(key):
            src = info[key]
            lines.append(f"- {what} `{src['model_dir'] if isinstance(src, dict) else src}`"
                         + (f" on {src['labels']:,} labelled sheets" if isinstance(src, dict) and "labels" in src else ""))
    return lines


def _data(info: dict) -> list[str]:
    t = info.get("training_data") or {}
    schema = info.get("schema") or {}
    kind = "simulated by neoqa's simulator (docs/simulator.md)" if t.get("simulated") else "a survey's own sheets"
    lines = [f"- {t.get('sheets', '?'):,} labelled sheets of the training split, {t.get('survey') or 'survey unknown'}"
             f" ({', '.join(t.get('channels') or []) or '? channels'}), {kind}"]
    if t.get("path"):
        lines.append(f"- dataset `{t['path']}`" + (f", digest `{t['digest'][:16]}`" if t.get("digest") else ""))
    lines.append(f"- sheets and labels fingerprint `{t.get('fingerprint', '?')}`; the split is a hash of each sheet's id "
                 "(70% train, 15% validation, 15% test)")
    lines.append(f"- inputs: {schema.get('channels', '?')} channels of {schema.get('cutout_size', '?')}-pixel cutouts, "
                 f"{len(schema.get('obs_scalars', []))} observation and {len(schema.get('sheet_scalars', []))} sheet "
                 "scalars; " + (f"needs `{'`, `'.join(info['needs'])}` (others it was trained on are median-imputed "
                                "when a dataset lacks them)" if info.get("needs")
                                else "reads no observation scalar by name (missing ones are median-imputed)"))
    return lines


def _performance(info: dict) -> list[str]:
    v = info.get("validation")
    cal = info.get("calibration") or {}
    lines = []
    if isinstance(v, dict):
        at = v.get("threshold", info.get("threshold"))
        lines.append(f"- validation accuracy {_pct(v.get('accuracy'))} on {v.get('sheets', 0):,} sheets against their "
                     f"labels at threshold {at}" + (" (the threshold it was trained with)" if at != info.get("threshold")
                                                   else "")
                     + "; about 2% of labels are wrong, so this understates the model against the truth")
    else:
        lines.append("- no validation score: the data had no validation sheets of both classes")
    lines.append(f"- decision threshold p >= {info.get('threshold')}"
                 + (f", set for {_pct(info['threshold_target_recall'])} recall" if info.get("threshold_target_recall")
                    else ", the one that maximised validation accuracy")
                 + (f"; probabilities temperature-scaled (T = {cal['temperature']:.3g})" if "temperature" in cal else ""))
    op = info.get("operating_point")
    if isinstance(op, dict):
        on = op.get("set_on") or {}
        lines.append(f"- operating point: accept p >= {op.get('accept_above')}, reject p < {op.get('reject_below')}, "
                     f"review between; set for {_pct(op.get('target_recall'))} recall and "
                     f"{_pct(op.get('target_precision'))} precision on `{on.get('data', '?')}` "
                     f"({on.get('labels', '?')} labels)")
    lines.append("- these numbers come from the validation split, which also chose the threshold; "
                 "`neoqa evaluate --model DIR --data PATH` gives the test split's, with 95% intervals")
    return lines


def model_card(info: dict) -> str:
    """``MODEL.md`` for the model ``model.json`` describes."""
    name = info.get("model", "?")
    t = info.get("training_data") or {}
    survey = t.get("survey") or "the survey it was trained on"
    out = [f"# Model card: {name}", "", SUMMARIES.get(name, "") + " (docs/models.md).", "",
           "## Made", *_made(info), "", "## Training data", *_data(info), "", "## Performance", *_performance(info), "",
           "## Intended use",
           f"- Vetting {survey} QA sheets: the probability that at least 5 of a sheet's observations hold the same "
           "moving object; decisions at the threshold, or accept / review / reject by the operating point "
           "(`neoqa score`, `neoqa triage`, `neoqa night`).",
           "- Ranking sheets for people to review; explaining a decision (`neoqa explain`).", "",
           "## Limitations"]
    if t.get("simulated"):
        out.append("- Trained on simulated sheets: its rates hold for the simulator's physics, not yet for real "
                   "sheets. Check it on labelled sheets of the real survey (`neoqa evaluate --split all`) before use, "
                   "and fine-tune on them (`neoqa finetune`).")
    out += [f"- Another survey or instrument than {survey} is data shift: measure it (`neoqa robustness`, "
            "`neoqa learning-curve`) rather than assume it.",
            "- The labels it learnt from are human vetting (about 2% wrong); `neoqa suspects` ranks the likely errors.",
            "- A probability that is not finite is never a decision: such a sheet goes to review.", "",
            f"_This card was {FIGURE_MARK} from model.json; `neoqa threshold --save` and `neoqa triage --save` "
            "rewrite both._", ""]
    return "\n".join(out)
