import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from neoqa.simulate import simulate

# kete needs its SPICE cache seeded before import; offline it would retry downloads.
_KETE_KERNELS = ("wise.bsp", "spitzer.bsp", "spherex.bsp", "1.bsp", "2.bsp", "4.bsp", "10.bsp", "704.bsp",
                 "earth_latest_combined.bpc")


@pytest.fixture(scope="session")
def kete():
    skyfield_data = pytest.importorskip("skyfield_data")
    cache = Path(tempfile.mkdtemp(prefix="kete-cache-"))
    core = cache / "kernels" / "core"
    core.mkdir(parents=True)
    shutil.copy(Path(skyfield_data.__file__).parent / "data" / "de421.bsp", core / "de421_as_de440s.bsp")
    for name in _KETE_KERNELS:
        (core / name).touch()
    os.environ["KETE_CACHE_DIR"] = str(cache)
    return pytest.importorskip("kete")


@pytest.fixture(scope="session")
def small_neowise(tmp_path_factory):
    """A small seeded NEOWISE dataset shared by the tests (two shards)."""
    from neoqa.simulate import runner

    out = tmp_path_factory.mktemp("data") / "nw"
    old = runner.SHARD_SIZE
    runner.SHARD_SIZE = 400
    try:
        simulate(out, 700, seed=11, survey="neowise", progress=False)
    finally:
        runner.SHARD_SIZE = old
    return out


@pytest.fixture(scope="session")
def small_batch(small_neowise):
    from neoqa.data.store import SheetSet

    return SheetSet(small_neowise).read()


@pytest.fixture(scope="session")
def large_batch():
    """Enough sheets for rate and balance statistics."""
    from neoqa.simulate import SimConfig, simulate_batch

    return simulate_batch(SimConfig(), 2500, seed=21)


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.fixture(scope="session")
def zoo_run(tmp_path_factory, small_neowise):
    """A small zoo run (ridge and Basic SNEON) shared by the zoo and report tests."""
    from neoqa.cli import main

    out = tmp_path_factory.mktemp("zoo")
    assert main(["zoo", "--data", str(small_neowise), "--out", str(out), "--kinds", "ridge", "basic_sneon"]) == 0
    return out
