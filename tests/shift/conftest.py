"""A small seeded NEO Surveyor dataset the shift tests share."""

import pytest

from neoqa.data.store import SheetSet


@pytest.fixture(scope="session")
def small_neos(tmp_path_factory):
    from neoqa.simulate import simulate

    out = tmp_path_factory.mktemp("ns") / "ns"
    simulate(out, 600, seed=12, survey="neosurveyor", progress=False)
    return out


@pytest.fixture(scope="session")
def neos_batch(small_neos):
    return SheetSet(small_neos).read()
