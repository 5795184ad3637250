"""One command language, checked over the parser: --data for every dataset read, --model always a
model folder (--kind where a model is made), --labels one meaning, help on every flag, and the
README's command table in step with the parser."""

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from neoqa import __version__
from neoqa.cli import build_parser, main

README = Path(__file__).resolve().parents[1] / "README.md"
READS_NO_DATASET = {"simulate", "night", "report", "main"}       # they make data, read a config or a run folder
DATASET_FLAGS = {"--data", "--old-data", "--replay-data", "--unlabelled-data"}


def verbs() -> dict[str, argparse.ArgumentParser]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def flags(parser) -> dict[str, argparse.Action]:
    return {o: a for a in parser._actions for o in a.option_strings if o.startswith("--") and o != "--help"}


def test_every_flag_and_argument_has_help():
    for verb, parser in verbs().items():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help != argparse.SUPPRESS and len(action.help) > 8, \
                (verb, action.option_strings or action.dest)


def test_datasets_are_given_with_data_and_only_night_takes_a_positional():
    for verb, parser in verbs().items():
        positional = [a.dest for a in parser._actions if not a.option_strings]
        assert positional == (["config"] if verb == "night" else []), verb
        f = flags(parser)
        if verb not in READS_NO_DATASET:
            assert "--data" in f, verb
        for name, action in f.items():
            if name.endswith("data"):
                assert name in DATASET_FLAGS and action.metavar == "PATH", (verb, name)


def test_model_is_always_a_folder_and_kind_names_a_model():
    for verb, parser in verbs().items():
        f = flags(parser)
        if "--model" in f:
            assert f["--model"].choices is None and "folder" in f["--model"].help, verb
        if "--kind" in f:
            assert verb in ("train", "suspects")
    assert "--model" not in flags(verbs()["train"]) and "--kind" in flags(verbs()["train"])


def test_labels_has_one_meaning():
    helps = {verb: flags(p)["--labels"].help for verb, p in verbs().items() if "--labels" in flags(p)}
    assert set(helps) == {"threshold", "triage"} and len(set(helps.values())) == 1


def test_every_writing_verb_says_what_out_is():
    for verb, parser in verbs().items():
        f = flags(parser)
        if "--out" in f:
            assert len(f["--out"].help) > 15, verb


def test_the_readme_command_table_matches_the_parser():
    """Every verb has a row, and every flag a row names exists for that verb."""
    rows = re.findall(r"^\| `(neoqa [^`]*)`", README.read_text(), flags=re.M)
    table = {}
    for row in rows:
        words = row.replace("\\|", " ").split()
        if len(words) > 1 and words[1] in verbs():
            table.setdefault(words[1], set()).update(w.strip("[]") for w in words if w.strip("[]").startswith("--"))
    assert set(table) == set(verbs()), set(verbs()) ^ set(table)
    for verb, named in table.items():
        missing = {n.split("=")[0] for n in named} - set(flags(verbs()[verb]))
        assert not missing, (verb, missing)


def test_version_and_train_help_lists_every_model(capsys):
    from neoqa.models.registry import ORDER, SUMMARIES

    assert set(SUMMARIES) == set(ORDER)
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"neoqa {__version__}"
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for name in ORDER:
        assert re.search(rf"^  {name}\s+{re.escape(SUMMARIES[name][:30])}", out, flags=re.M), name


@pytest.mark.parametrize("argv, says", [
    (["train", "--model", "gbdt", "--data", "d", "--out", "m"], "--model is now --kind NAME"),
    (["info", "data/x"], "the dataset is now given as --data data/x"),
    (["export", "--data", "d", "--to", "x"], "--to is now --out DIR"),
    (["finetune", "--model", "m", "--data", "d", "--labels", "10", "--out", "o"], "--labels is now --labelled N"),
    (["zoo", "--data", "d", "--out", "o", "--models", "ridge"], "--models is now --kinds"),
])
def test_old_spellings_get_a_one_line_pointer(capsys, argv, says):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1


def test_parsing_does_not_import_the_models():
    """--help and argument errors are instant: building the parser imports no model library."""
    code = ("import sys; from neoqa.cli import build_parser; build_parser().format_help(); "
            "print(sorted(m for m in ('torch', 'lightgbm', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_parsers_bucket_names_are_the_models():
    """The parser keeps its own copy (parsing imports no model library); it must not drift."""
    from neoqa.cli import BUCKET_NAMES
    from neoqa.models.calibration import BUCKETS

    assert BUCKET_NAMES == BUCKETS


def test_every_verb_takes_quiet_and_it_silences_every_bar(small_neowise, tmp_path, capsys):
    """A nightly job's log wants no progress bars: --quiet on every verb, and it reaches every bar
    (the scorer's, a fit's heartbeat and the zoo's)."""
    assert all("--quiet" in flags(parser) for parser in verbs().values())
    from neoqa import progress

    try:
        assert main(["info", "--data", str(small_neowise), "--quiet"]) == 0
        out = tmp_path / "m"
        assert main(["train", "--kind", "ridge", "--data", str(small_neowise), "--out", str(out)]) == 0
        loud = capsys.readouterr().err
        assert main(["score", "--model", str(out), "--data", str(small_neowise), "--out", str(tmp_path / "s")]) == 0
        assert "score: 100%" in capsys.readouterr().err and "fit " in loud        # bars by default
        assert main(["train", "--kind", "ridge", "--data", str(small_neowise), "--out", str(tmp_path / "q"),
                     "--quiet"]) == 0
        assert main(["score", "--model", str(out), "--data", str(small_neowise), "--out", str(tmp_path / "s2"),
                     "--quiet"]) == 0
        captured = capsys.readouterr()
        assert captured.err == "" and "scored 700 sheets" in captured.out      # the summary stays
    finally:
        progress.set_quiet(False)
