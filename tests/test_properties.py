"""Property-based tests (hypothesis) of the format's validation, the views and the name rules."""

import tempfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from neoqa.features import views as features
from neoqa.errors import NeoqaError
from neoqa.outputs import confined, safe_name
from neoqa.data.store import SheetSet, write_shard

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ids = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@pytest.fixture(scope="module")
def template(small_batch):
    return small_batch.select(np.arange(60))


@SETTINGS
@given(picks=st.lists(st.integers(0, 59), min_size=1, max_size=12, unique=True),
       names=st.lists(ids, min_size=12, max_size=12, unique=True),
       holes=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 100)), max_size=8))
def test_any_batch_round_trips_exactly(template, picks, names, holes):
    """Any subset, any unique ids (any characters), NaN anywhere in the scalars: written, then read
    back equal, with observations still beside their own sheet."""
    b = template.select(picks)
    b.sheet_id = np.array(names[:len(b)])
    for row, col in holes:
        b.obs_scalars[row % b.n_obs, col % b.obs_scalars.shape[1]] = np.nan
        b.sheet_scalars[row % len(b), col % b.sheet_scalars.shape[1]] = np.nan
    with tempfile.TemporaryDirectory() as d:
        back = SheetSet(write_shard(Path(d) / "s.h5", b)).read()
    assert back.equals(b)
    for i, p in enumerate(picks):
        o, t = back.offsets, template.offsets
        np.testing.assert_array_equal(back.cutouts[o[i]:o[i + 1]], template.cutouts[t[p]:t[p + 1]])


MAY_BE_NAN = ("sheets/sheet_scalars", "obs/obs_scalars", "obs/mag")
FIELDS = ["sheets/sheet_id", "sheets/label", "sheets/k", "sheets/composite", "sheets/sheet_scalars",
          "obs/cutouts", "obs/obs_scalars", "obs/ra", "obs/dec", "obs/mjd", "obs/band", "obs/mag"]


@SETTINGS
@given(field=st.sampled_from(FIELDS),
       how=st.sampled_from(["drop", "float", "int", "short", "longer", "scalar", "nan", "text"]))
def test_a_damaged_field_is_refused_or_read_the_same(template, field, how):
    """Whatever is done to one stored field, opening and reading either give the original back or
    raise NeoqaError: never another exception, never different data."""
    b = template.select(np.arange(8))
    with tempfile.TemporaryDirectory() as d:
        path = write_shard(Path(d) / "s.h5", b)
        with h5py.File(path, "r+") as f:
            a = f[field][()]
            del f[field]
            if how == "float":                    # fractional where it was whole; wider where it was float
                a = np.arange(len(a)) + 0.5 if a.dtype.kind == "S" else a.astype(np.float64) + (a.dtype.kind in "iu") / 2
            elif how == "int":
                a = np.arange(len(a))
            elif how == "short":
                a = a[:-1]
            elif how == "longer":
                a = np.concatenate([a, a[:1]])
            elif how == "scalar":
                a = np.array(3)
            elif how == "nan" and field not in MAY_BE_NAN:   # NaN is a missing value where allowed: skip those
                a = np.full(a.shape, np.nan) if a.dtype.kind == "f" else a
            elif how == "text":
                a = np.array([b"x"] * len(a))
            if how != "drop":
                f.create_dataset(field, data=a)
        try:
            back = SheetSet(path).read()
        except NeoqaError:
            return
        assert back.equals(b)


@SETTINGS
@given(picks=st.lists(st.integers(0, 59), min_size=1, max_size=20))
def test_views_keep_each_sheet_whole(template, picks):
    """The padded set view holds exactly k valid observations per sheet, in the same order, and the
    fixed-length view has one row per sheet, whatever the selection (repeats included)."""
    b = template.select(picks)
    sets = features.padded_sets(b)
    mask = np.asarray(sets["mask"])
    assert mask.shape[0] == len(b)
    np.testing.assert_array_equal(mask.sum(axis=1), b.k)
    assert features.fixed_length(b).shape[0] == len(b)
    np.testing.assert_array_equal(b.k, template.k[picks])


@settings(max_examples=300, deadline=None)
@given(st.lists(ids, min_size=2, max_size=6, unique=True))
def test_safe_names_are_plain_and_distinct(names):
    safe = [safe_name(n) for n in names]
    assert len(set(safe)) == len(safe)
    for s in safe:
        assert s and "/" not in s and "\\" not in s and "\x00" not in s and not s.startswith(".")
        assert s not in (".", "..") and len(s) <= 120
        assert confined(Path("/base"), s, "t").parent == Path("/base")


@settings(max_examples=300, deadline=None)
@given(st.text(min_size=0, max_size=30))
def test_confined_never_leaves_its_folder(rel):
    base = Path(tempfile.gettempdir()) / "neoqa-confined-base"
    try:
        p = confined(base, rel, "t")
    except NeoqaError:
        return
    assert base.resolve() in p.resolve().parents or p.resolve() == base.resolve()
