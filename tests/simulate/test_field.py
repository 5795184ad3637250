"""False detections at a frame's densities, the survey's coverage, and the false tracklets a
linker makes of them."""

import numpy as np
import pytest

from neoqa.data.schema import SCENARIOS, SOURCE_CODE
from neoqa.simulate import SimConfig, field, instruments, generator as gen


def test_noise_peak_heights_follow_the_smooth_field_tail():
    """Peaks above u of a smooth Gaussian field number u exp(-u^2/2) (Adler 1981): the share of
    peaks above 5 among those above 4.5 is (5 e^-12.5) / (4.5 e^-10.125)."""
    u = field.noise_peak_snr(np.random.default_rng(0), 400_000, 4.5)
    assert u.min() >= 4.5 - 1e-9
    expect = 5 * np.exp(-12.5) / (4.5 * np.exp(-4.5**2 / 2))
    assert np.mean(u > 5.0) == pytest.approx(expect, rel=0.03)


@pytest.mark.slow
@pytest.mark.parametrize("survey", ["neowise", "neosurveyor"])
def test_noise_peak_density_is_the_measured_one(survey):
    inst = instruments.get(survey)
    got = field.measure_noise_peak_density(inst, size=2048, images=3, seed=7)
    np.testing.assert_allclose(got, inst.noise_peak_density_px2, rtol=0.2)


def test_feature_geometry():
    """Expected detections near a point: a spike arm's chord, a halo ring's arc, a blob's overlap."""
    tol, lam = 1.2, 0.25
    star = np.zeros((1, len(field.STAR_COLS)))
    star[0, 2] = 30.0                                    # spikes reach 30 px
    on_arm = field.components_at(np.array([10.0]), np.array([0.0]), star, np.zeros(1), tol, 2.0, lam, 0.1, 1.5)
    assert on_arm[0, field.SPIKE] == pytest.approx(lam * 2 * tol)
    off = field.components_at(np.array([10.0]), np.array([5.0]), star, np.zeros(1), tol, 2.0, lam, 0.1, 1.5)
    assert off[0, field.SPIKE] == 0.0
    star[0, 2], star[0, 3], star[0, 4] = 0.0, 8.0, 1.0     # a halo of radius 8
    ring = field.components_at(np.array([8.0]), np.array([0.0]), star, np.zeros(1), tol, 2.0, lam, 0.1, 1.5)
    assert ring[0, field.HALO] == pytest.approx(0.1 * 2 * 8 * np.arccos((64 + 64 - tol**2) / (2 * 64)), rel=1e-6)
    star[0, 4], star[0, 5], star[0, 7] = 0.0, 3.0, 0.6    # a ghost blob at (3, 0)
    blob = field.components_at(np.array([3.0]), np.array([0.0]), star, np.zeros(1), tol, 2.0, lam, 0.1, 1.5)
    assert blob[0, field.GHOST] == pytest.approx(0.6 * tol**2 / 1.5**2)


def test_placed_detections_lie_within_tolerance_on_their_feature():
    rng = np.random.default_rng(1)
    m, tol = 3000, 1.2
    star = np.zeros((m, len(field.STAR_COLS)))
    star[:, 2], star[:, 3], star[:, 4] = 40.0, 10.0, 1.0
    star[:, 5], star[:, 6] = 4.0, 4.0
    comp = rng.integers(0, 4, m)
    qx = np.where(comp == field.HALO, 10.0, np.where(comp == field.GHOST, 4.5, rng.uniform(3, 30, m)))
    qy = np.where(comp == field.SPIKE, rng.uniform(-1, 1, m), np.where(comp == field.GHOST, 4.0, 0.5))
    x, y = field.place_hits(rng, comp, qx, qy, star, tol, 2.0, 1.5)
    assert np.all(np.hypot(x - qx, y - qy) <= tol + 1e-9)
    spike = comp == field.SPIKE
    assert np.all(y[spike] == 0.0)                        # on the arm along +x
    halo = comp == field.HALO
    assert np.allclose(np.hypot(x[halo], y[halo]), 10.0)


def test_coverage_follows_the_scan():
    """A fixed position near the ecliptic is in WISE's scan for ~12 orbits (ES-Prelim I.4.d), about
    12 / cos(b) at ecliptic latitude b; a main-belt object, moving east more slowly than the scan,
    stays longer."""
    inst = instruments.get("neowise")
    sv = gen._geometry(np.random.default_rng(2), inst, 4000)
    rows = np.arange(4000)
    zero = np.zeros(sv.times.shape)
    n = gen._covered(inst, sv, rows, zero, zero).sum(1)
    lat = np.rad2deg(np.arcsin(sv.pointing_ecl[:, 2]))
    assert np.median(n[np.abs(lat) < 5]) == pytest.approx(12, abs=1)
    high = (np.abs(lat) > 55) & (np.abs(lat) < 65)
    assert np.median(n[high] * np.cos(np.deg2rad(lat[high]))) == pytest.approx(12, abs=1.5)


@pytest.fixture(scope="module")
def false_tracklets():
    cfg = SimConfig(scenario_weights={"chance": 0.7, "artifact": 0.3})
    inst = instruments.get("neowise")
    rng = np.random.default_rng(4)
    return [gen.simulate_candidates(rng, inst, cfg, 2048) for _ in range(3)]


def test_false_tracklets_come_out_of_the_linker(false_tracklets):
    """Chance tracklets' rates and position angles are not the search's uniform velocity disk: the
    linker accepts more of the hypotheses the scan keeps in view (moving east with it) and few
    moving against it; none holds an object, every one is a chain of at least five."""
    from scipy import stats

    rate = np.concatenate([b.sheet_scalar("rate_deg_per_day") for b in false_tracklets])
    pa = np.concatenate([b.sheet_scalar("position_angle_deg") for b in false_tracklets])
    assert len(rate) > 600
    lo, hi = instruments.NEOWISE.rate_window_deg_per_day
    disk = np.sqrt(np.random.default_rng(0).uniform(lo**2, hi**2, 20_000))
    assert stats.ks_2samp(rate, disk).pvalue < 1e-3
    west = np.mean((pa > 225) & (pa < 315))
    assert west < 0.12                                    # the uniform disk would give 0.25
    for b in false_tracklets:
        assert np.all(b.truth_sheet["clean_label"] == 0) and np.all(b.k >= 5)
        assert not np.any(b.truth_obs["source_kind"] == SOURCE_CODE["object"])


def test_artifact_tracklets_pass_a_bright_star(false_tracklets):
    b = false_tracklets[0]
    art = b.truth_sheet["scenario"] == SCENARIOS.index("artifact")
    sheet = b.obs_sheet_index()
    kinds = b.truth_obs["source_kind"]
    # the star's features are among their detections, and only theirs
    feature = np.isin(kinds, [SOURCE_CODE["diffraction_spike"], SOURCE_CODE["halo"]])
    assert feature.any() and np.all(art[sheet[feature]])
    # the pipeline knows the star: its distance is measured for most of their detections
    star_dist = b.obs_scalar("star_dist_arcsec")
    assert np.mean(np.isfinite(star_dist[art[sheet]])) > 0.5


def test_mixtures_are_two_objects_each_with_its_own_motion():
    """A mixture's second object is a member of the populations with its own orbit: it crosses the
    first's track, appears in the cutouts of the exposures near the crossing, and moves relative to
    the first (the cutouts follow the first object's fitted line)."""
    inst = instruments.get("neowise")
    rng = np.random.default_rng(6)
    b = gen.simulate_candidates(rng, inst, SimConfig(scenario_weights={"two_objects": 1.0}), 2048)
    t = b.truth_obs
    sheet = b.obs_sheet_index()
    assert np.all(b.truth_sheet["scenario"] == SCENARIOS.index("two_objects"))
    seen = np.isfinite(t["object2_x_px"])
    per_sheet = np.bincount(sheet[seen], minlength=len(b))
    assert np.mean(per_sheet >= 1) > 0.5                  # it crosses the track in most sheets
    moving = []
    for i in np.flatnonzero(per_sheet >= 2):
        rows = np.flatnonzero((sheet == i) & seen)
        moving.append(np.ptp(np.hypot(t["object2_x_px"][rows], t["object2_y_px"][rows])) > 1.0)
    assert len(moving) > 20 and np.mean(moving) > 0.8
    # where the linker took the second object's detection, the observation holds it
    took = t["object_id"] == 1
    assert took.any() and np.all(seen[took])
