"""Operating points and triage."""

import json

import numpy as np

from neoqa.cli import main
from neoqa.evaluate.thresholds import decimal_cut, fpr_at_recall, precision_threshold, recall_threshold


def test_recall_threshold_keeps_the_recall():
    rng = np.random.default_rng(0)
    y = (rng.random(2000) < 0.25).astype(int)
    p = np.clip(rng.normal(0.3 + 0.4 * y, 0.2), 0, 1)
    for r in (0.9, 0.99, 0.995):
        t = recall_threshold(y, p, r)
        assert np.mean(p[y == 1] >= t) >= r
        # the largest such threshold: a hair above the score it cuts at loses recall
        t0 = p[p >= t].min()
        assert np.mean(p[y == 1] >= np.nextafter(t0, 2)) < r
    assert fpr_at_recall(y, p, 0.5) < fpr_at_recall(y, p, 0.99)


def test_thresholds_are_the_shortest_decimal_that_decides_alike():
    """0.0123, not 0.012318840487301350: stored thresholds say what they mean and decide every
    validation sheet as the exact score would."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        p = rng.random(rng.integers(2, 300)) ** rng.uniform(0.2, 5)
        t = float(rng.choice(p))
        cut = decimal_cut(t, p)
        assert np.array_equal(p >= cut, p >= t) and cut <= t
        digits = len(repr(cut).split(".")[1]) if "." in repr(cut) else 0
        below = p[p < t].max(initial=0.0)
        assert digits <= 1 or np.floor(t * 10 ** (digits - 1)) / 10 ** (digits - 1) <= below   # one digit fewer fails
    assert decimal_cut(0.49999999999999994, [0.3, 0.49999999999999994]) == 0.4
    assert decimal_cut(float("inf"), [0.5]) == float("inf")


def test_precision_threshold_keeps_the_precision():
    y = np.array([1, 1, 1, 0, 1, 0, 0, 0])
    p = np.array([0.9, 0.8, 0.7, 0.65, 0.6, 0.5, 0.4, 0.1])
    t = precision_threshold(y, p, 0.8)
    acc = p >= t
    assert y[acc].mean() >= 0.8 and t == 0.6
    assert precision_threshold(y, p, 1.0) == 0.7
    assert precision_threshold(np.zeros(3), np.ones(3), 0.5) == float("inf")


def test_threshold_cli(zoo_run, small_neowise, capsys):
    model = zoo_run / "models" / "ridge"
    assert main(["threshold", "--model", str(model), "--data", str(small_neowise), "--recall", "0.95",
                 "--bootstrap", "50", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["validation"]["recall"] >= 0.95
    lo, hi = r["threshold_ci95"]
    assert lo <= hi and 0 <= r["test"]["fpr"] <= 1


def test_threshold_save_changes_the_model(tmp_path, zoo_run, small_neowise):
    import shutil

    model = shutil.copytree(zoo_run / "models" / "ridge", tmp_path / "ridge")
    assert main(["threshold", "--model", str(model), "--data", str(small_neowise), "--recall", "0.97",
                 "--bootstrap", "20", "--save"]) == 0
    info = json.loads((model / "model.json").read_text())
    assert info["threshold_target_recall"] == 0.97
    assert len(repr(info["threshold"])) <= 10                    # a short decimal, not 0.38999999999999996
    card = (model / "MODEL.md").read_text()                      # the model card follows model.json
    assert f"decision threshold p >= {info['threshold']}, set for 97.00% recall" in card


def test_a_bootstrap_interval_of_an_unreachable_threshold_is_not_nan():
    """Resamples where no threshold reaches the precision give inf; the interval stays ordered."""
    from neoqa.evaluate.thresholds import bootstrap_interval

    y = np.array([1, 0] * 20)
    p = np.r_[np.linspace(0.1, 0.9, 38), 0.95, 0.96]
    lo, hi = bootstrap_interval(lambda a, q: precision_threshold(a, q, 0.99), (y, p), 100, 0)
    assert lo <= hi and not np.isnan(lo) and not np.isnan(hi)
