"""Long steps say what they are doing: a bar over LightGBM's trees, a heartbeat for silent fits."""

import time

import numpy as np

from neoqa.progress import heartbeat, tree_bar


def test_heartbeat_names_the_step_and_its_time(capsys):
    with heartbeat("fit MLPClassifier"):
        time.sleep(2.3)
    err = capsys.readouterr().err
    assert "fit MLPClassifier: 00:02" in err
    assert err.count("fit MLPClassifier") >= 3                    # refreshed while it ran, not just at the end
    with heartbeat("quiet", enabled=False):
        pass
    assert capsys.readouterr().err == ""


def test_tree_bar_counts_lightgbm_rounds(capsys):
    import lightgbm

    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 3)), rng.integers(0, 2, 200)
    bar = tree_bar(17, "fit gradient-boosted trees")
    lightgbm.LGBMClassifier(n_estimators=17, verbose=-1).fit(X, y, callbacks=[bar])
    err = capsys.readouterr().err
    assert "fit gradient-boosted trees: 100%" in err and "17/17" in err
