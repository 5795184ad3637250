"""The run report: self-contained HTML, opened in a real browser (headless Chromium)."""

import re
import shutil
import subprocess

import pytest

from neoqa.runs.report import write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


@pytest.fixture(scope="module")
def report(zoo_run):
    return write_report(zoo_run, samples=4)


def test_report_is_self_contained(report):
    text = report.read_text()
    assert "<table>" in text and "basic_sneon" in text and "ridge" in text
    imgs = re.findall(r'<img alt="[^"]*" src="([^"]+)"', text)
    assert len(imgs) >= 7                      # 3 figures, 4 explained cases (or fewer), ridge weights
    assert all(src.startswith("data:image/png;base64,") for src in imgs)
    for case in ("true positive", "true negative"):
        assert case in text
    # where it came from: the version, the commit (a git checkout), the date, the data's digest, the commands
    assert re.search(r"The run was made by neoqa \d+\.\d+\.\d+ \(commit [0-9a-f]{12}(\+modified)?\) on "
                     r"\d{4}-\d\d-\d\d \d\d:\d\d UTC: <code>[^<]*zoo --data", text), text[:3000]
    assert "data digest <code>" in text and "This page was written by neoqa" in text
    # each explained example says whether its label is one the clean truth confirms
    assert text.count("the clean truth agrees with the label") + text.count("the label is one of the flipped") >= 2


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (make test installs it)")
def test_report_renders_in_a_real_browser(report, tmp_path):
    dom = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'p1'}", "--virtual-time-budget=5000",
                          "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=120)
    body = re.search(r'<body data-images-loaded="(\d+)" data-images="(\d+)">', dom.stdout)
    assert body, "the page's load script did not run"
    loaded, total = map(int, body.groups())
    assert total >= 7 and loaded == total
    shot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'p2'}", "--window-size=1300,2000",
                    f"--screenshot={shot}", report.as_uri()], capture_output=True, timeout=120)
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[0] == 2000 and pixels.shape[1] == 1300
    assert pixels[..., :3].std() > 0.05        # not a blank page
