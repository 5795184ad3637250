"""The command line: JSON summaries, one-line errors with non-zero exits, figures."""

import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from neoqa.cli import build_parser, main


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "neoqa.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_info_json_has_the_contract_keys(small_neowise, capsys):
    assert main(["info", "--data", str(small_neowise), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    for key in ("sheets", "positive_fraction", "k_min", "k_max", "k_histogram", "survey", "channels",
                "sheet_scalars", "obs_scalars", "label_noise_rate"):
        assert key in s
    assert s["sheets"] == 700 and s["survey"] == "neowise" and s["channels"] == ["W1", "W2"]
    assert sum(s["k_histogram"].values()) == 700 and s["k_min"] >= 5
    assert 0.15 < s["positive_fraction"] < 0.32
    assert 0.0 <= s["label_noise_rate"] < 0.06
    assert s["provenance"]["seed"] == 11
    assert s["observations_with_wcs"] == s["observations"] > 700


def test_info_text(small_neowise, capsys):
    assert main(["info", "--data", str(small_neowise)]) == 0
    out = capsys.readouterr().out
    assert "700 sheets" in out and "W1, W2" in out and "seed=11" in out
    assert "cutouts' WCS: known for every observation" in out


def test_info_counts_unvetted_sheets_apart(tmp_path, small_batch, capsys):
    """Unlabelled sheets are neither real nor false, nor label errors."""
    from dataclasses import replace

    import numpy as np

    from neoqa.data.store import write_dataset

    b = small_batch.select(np.arange(100))
    label = b.label.copy()
    label[:40] = -1
    write_dataset(tmp_path / "d", [replace(b, label=label)])
    assert main(["info", "--data", str(tmp_path / "d"), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["labelled"] == 60 and s["real"] == int((label == 1).sum())
    assert s["positive_fraction"] == pytest.approx(s["real"] / 60)
    clean = b.truth_sheet["clean_label"]
    assert s["label_noise_rate"] == pytest.approx(float(np.sum((label != clean) & (label >= 0))) / 60)
    assert main(["info", "--data", str(tmp_path / "d")]) == 0
    assert "40 not vetted" in capsys.readouterr().out


@pytest.mark.parametrize("args, needle", [
    (["info", "--data", "/nonexistent/data"], "no such file or folder"),
    (["simulate", "--sheets", "0", "--out", "x"], "argument --sheets: must be at least 1"),
    (["ingest", "--data", "/nonexistent/dir", "--out", "y"], "no such folder"),
])
def test_errors_are_one_line_and_non_zero(tmp_path, args, needle):
    r = run(*args, cwd=tmp_path)
    assert r.returncode == 2
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_simulate_refuses_to_overwrite(tmp_path, small_neowise):
    r = run("simulate", "--sheets", "5", "--out", str(small_neowise))
    assert r.returncode == 2 and "already exists" in r.stderr


def test_simulate_defaults():
    a = build_parser().parse_args(["simulate"])
    assert a.survey == "neowise" and a.out is None and a.sheets is None and a.seed == 0


def test_show_draws_a_png(tmp_path, small_neowise, small_batch):
    i = int(np.flatnonzero(small_batch.truth_sheet["clean_label"] == 1)[0])
    out = tmp_path / "sheet.png"
    assert main(["show", "--data", str(small_neowise), "--sheet", small_batch.sheet_id[i], "--out", str(out)]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


def test_show_labels_what_a_vetter_needs(small_batch):
    """S/N on every cutout, the sheet's position, the fitted motion drawn along its position angle
    (north up, east left) and a compass on simulated data; no compass where orientation is unknown."""
    import matplotlib.pyplot as plt

    from neoqa.explain.sheet import sheet_figure

    i = int(np.flatnonzero(small_batch.truth_sheet["clean_label"] == 1)[0])
    sheet = small_batch.select([i])
    fig = sheet_figure(sheet)
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    shown = min(int(sheet.k[0]), 12)
    assert sum(t.startswith("S/N ") for t in texts) == 2 * shown
    assert any(f"RA {sheet.ra[np.argmin(sheet.mjd)]:.5f}" in t for t in texts)
    assert {"N", "E"} <= set(texts)
    arrows = [c for ax in fig.axes for c in ax.texts if c.get_text() == "" and hasattr(c, "xyann")]
    motion = arrows[0]                                   # the first arrow: the motion, on the W1 composite
    (x1, y1), (x0, y0) = motion.xy, motion.xyann
    pa = np.degrees(np.arctan2(-(x1 - x0), y1 - y0)) % 360       # east of north, east to the left
    assert abs(pa - sheet.sheet_scalar("position_angle_deg")[0] % 360) < 0.5
    plt.close(fig)
    # a team's cutouts turned 30 degrees on the sky (their WCS says so): the compass and the motion turn too
    turn = np.radians(30.0)
    rot = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    wcs = sheet.wcs.copy()
    wcs[:, 4:] = (wcs[:, 4:].reshape(-1, 2, 2) @ rot).reshape(-1, 4)
    turned = replace(sheet, wcs=wcs, meta={**sheet.meta, "provenance": {}})
    fig = sheet_figure(turned)
    arrows = [c for ax in fig.axes for c in ax.texts if c.get_text() == "" and hasattr(c, "xyann")]
    angle = [np.degrees(np.arctan2(a.xy[1] - a.xyann[1], a.xy[0] - a.xyann[0])) for a in arrows]
    north_before = 90.0
    assert abs((angle[1] - north_before + 180) % 360 - 180 - (-30.0)) < 1.0      # north, turned with the pixels
    assert abs((angle[0] - np.degrees(np.arctan2(y1 - y0, x1 - x0)) + 180) % 360 - 180 + 30.0) < 1.0   # the motion too
    plt.close(fig)
    blind = replace(sheet, wcs=np.full_like(sheet.wcs, np.nan), meta={**sheet.meta, "provenance": {}})
    fig = sheet_figure(blind)                            # own data without a WCS: orientation not recorded
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert "N" not in texts and any("orientation not recorded" in t for t in texts)
    plt.close(fig)


def test_show_unknown_sheet(tmp_path, small_neowise, capsys):
    assert main(["show", "--data", str(small_neowise), "--sheet", "nope", "--out", str(tmp_path / "x.png")]) == 2
    assert "sheet 'nope' not found" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_version(capsys):
    from neoqa import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"neoqa {__version__}"


def test_train_says_how_the_model_did(tmp_path, small_neowise, capsys):
    assert main(["train", "--kind", "ridge", "--data", str(small_neowise), "--out", str(tmp_path / "m")]) == 0
    out = capsys.readouterr().out
    info = json.loads((tmp_path / "m" / "model.json").read_text())
    v = info["validation"]
    assert 0.5 < v["accuracy"] <= 1 and v["sheets"] > 50
    assert (f"validation accuracy {v['accuracy']:.1%} on {v['sheets']:,} sheets at threshold "
            f"{info['threshold']:.3f}") in out and out.startswith(f"wrote {tmp_path / 'm'}: ridge")
