import json
import shutil

import pyarrow.parquet as pq
import pytest


@pytest.fixture
def without_columns(tmp_path):
    """A copy of an exported layout with ``names`` dropped from its ``stem`` table (sheets or
    observations) and from dataset.json's list of that table's scalars, as a team's tables lack them."""
    def copy(layout, stem, names, to="bare"):
        d = shutil.copytree(layout, tmp_path / to)
        table = pq.read_table(d / f"{stem}.parquet")
        pq.write_table(table.drop_columns(names), d / f"{stem}.parquet")
        meta = json.loads((d / "dataset.json").read_text())
        key = "sheet_scalars" if stem == "sheets" else "obs_scalars"
        meta[key] = [n for n in meta[key] if n not in names]
        (d / "dataset.json").write_text(json.dumps(meta))
        return d, meta
    return copy
