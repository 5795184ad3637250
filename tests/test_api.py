"""The Python API: docs/api.md's notebook runs as written, and ``import neoqa`` stays light."""

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"


def test_the_api_page_runs_as_written(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    namespace = {}
    for code in blocks:
        exec(compile(code, str(DOC), "exec"), namespace)
    out = capsys.readouterr().out
    assert "left for people" in out and "composite" in out
    assert (tmp_path / "ridge-model" / "model.json").is_file()


def test_every_api_name_resolves_and_import_is_light():
    import types

    import neoqa
    import neoqa.evaluate.evaluation  # noqa: F401  (subpackages imported first must not shadow an API name)
    import neoqa.simulate.runner  # noqa: F401

    for name in neoqa.__all__:
        assert not isinstance(getattr(neoqa, name), types.ModuleType), name
    r = subprocess.run([sys.executable, "-c", "import sys, neoqa; print('torch' in sys.modules, 'sklearn' in sys.modules)"],
                       capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["False", "False"]


def test_drawing_leaves_a_notebooks_matplotlib_backend_alone(tmp_path):
    """A notebook has chosen its backend before neoqa draws: neoqa must not switch it to Agg."""
    import subprocess
    import sys

    code = ("import matplotlib; matplotlib.use('svg'); import matplotlib.pyplot as plt\n"
            "from neoqa import figures\n"
            "fig, ax = figures.pyplot().subplots(); ax.plot([0, 1])\n"
            f"figures.save(fig, {str(tmp_path / 'f.png')!r})\n"
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "svg" and (tmp_path / "f.png").read_bytes()[:4] == b"\x89PNG"
    fresh = subprocess.run([sys.executable, "-c", "from neoqa import figures; import matplotlib; figures.pyplot();"
                            "print(matplotlib.get_backend())"], capture_output=True, text=True, timeout=120,
                           env={k: v for k, v in __import__("os").environ.items() if k != "MPLBACKEND"})
    assert fresh.stdout.strip().lower() == "agg", fresh.stderr          # a pipeline machine: file-only
