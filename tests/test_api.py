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
