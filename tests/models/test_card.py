"""The model card (MODEL.md) and model.json's pointer to the training data."""

import json

from neoqa.cli import main
from neoqa.data.store import SheetSet


def test_train_writes_a_card_and_points_at_its_data(tmp_path, small_neowise, capsys):
    out = tmp_path / "gbdt"
    assert main(["train", "--kind", "gbdt", "--data", str(small_neowise), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    info = json.loads((out / "model.json").read_text())
    data = info["training_data"]
    assert data["path"] == str(small_neowise.resolve()) and data["digest"] == SheetSet(small_neowise).digest()
    assert data["simulated"] is True and info["needs"] and "snr_ch1" in info["needs"]
    assert info["provenance"]["command"].startswith("neoqa train --kind gbdt")
    card = (out / "MODEL.md").read_text()
    accuracy = f"{100 * info['validation']['accuracy']:.2f}%"
    assert f"{accuracy} on {info['validation']['sheets']:,} sheets" in card
    assert f"{info['validation']['accuracy']:.1%}" in said             # the card and the console agree
    for needle in ("# Model card: gbdt", "LightGBM", str(small_neowise.resolve()), "Trained on simulated sheets",
                   "`snr_ch1`", "## Intended use", "## Limitations", "made by neoqa"):
        assert needle in card, needle


def test_saving_an_operating_point_rewrites_the_card_or_neither(tmp_path, small_neowise, capsys):
    out = tmp_path / "ridge"
    assert main(["train", "--kind", "ridge", "--data", str(small_neowise), "--out", str(out)]) == 0
    assert main(["triage", "--model", str(out), "--data", str(small_neowise), "--recall", "0.95", "--save",
                 "--bootstrap", "20"]) == 0
    op = json.loads((out / "model.json").read_text())["operating_point"]
    assert f"accept p >= {op['accept_above']}, reject p < {op['reject_below']}" in (out / "MODEL.md").read_text()
    (out / "MODEL.md").write_text("our own notes\n")          # a card a person rewrote is not replaced
    before = (out / "model.json").read_bytes()
    capsys.readouterr()
    assert main(["triage", "--model", str(out), "--data", str(small_neowise), "--recall", "0.9", "--save",
                 "--bootstrap", "20"]) == 2
    assert "MODEL.md" in capsys.readouterr().err
    assert (out / "model.json").read_bytes() == before and (out / "MODEL.md").read_text() == "our own notes\n"
