"""The simulator's vectorised physics against kete, astropy and the published numbers."""

import numpy as np
import pytest

from neoqa.simulate import geometry as geo, orbits, population, render, thermal
from neoqa.simulate.photometry import Frame
from neoqa.simulate.instruments import NEOSURVEYOR, NEOWISE


def test_neatm_matches_kete(kete):
    rng = np.random.default_rng(0)
    n = 12
    sun2obj = rng.uniform(-3, 3, (n, 3)); sun2obj[:, 2] *= 0.2
    sun2obj *= (rng.uniform(1.05, 3.2, n) / np.linalg.norm(sun2obj, axis=1))[:, None]
    sun2obs = geo.earth_position(rng.uniform(57000, 60000, n))
    D = rng.uniform(0.2, 10, n); pv = rng.uniform(0.03, 0.4, n); eta = rng.uniform(0.8, 2.5, n)
    for inst in (NEOWISE, NEOSURVEYOR):
        ba = np.stack([1.6 * pv, 1.6 * pv], 1)
        therm, refl = thermal.neatm_flux(sun2obj, sun2obs, D, pv, ba, inst.wavelength_nm, beaming=eta, parts=True)
        for i in range(n):
            ref = kete.flux.neatm_model_flux(sun2obj[i], sun2obs[i], list(ba[i]), diameter=D[i], vis_albedo=pv[i],
                                             beaming=eta[i], band_wavelengths=list(inst.wavelength_nm),
                                             zero_mags=list(inst.zero_point_jy))
            # kete integrates over facets; the quadrature agrees within a few per cent.
            np.testing.assert_allclose(therm[i], ref.thermal_fluxes, rtol=0.03)
            # Reflected light: E-490 sun (kete.flux.solar_flux) times albedo, size and HG phase.
            o = sun2obs[i] - sun2obj[i]
            r, d = np.linalg.norm(sun2obj[i]), np.linalg.norm(o)
            alpha = np.degrees(np.arccos(np.dot(-sun2obj[i], o) / (r * d)))
            expect = [kete.flux.solar_flux(r, lam) * ba[i, j] * (D[i] / 2 / geo.AU_KM) ** 2 / d**2
                      * kete.flux.hg_phase_curve_correction(0.15, alpha) for j, lam in enumerate(inst.wavelength_nm)]
            np.testing.assert_allclose(refl[i], expect, rtol=2e-3)


def test_two_body_propagation_matches_kete(kete):
    rng = np.random.default_rng(1)
    pos, vel, _, w = orbits.place_on_sightline(
        rng, np.tile([0.0, 1.0, 0.0], (200, 1)), geo.lonlat_to_unit(rng.uniform(0, 360, 200), rng.uniform(-20, 20, 200)),
        *orbits.sample_elements(rng, 200, "neo"))
    pos, vel = pos[w > 0][:20], vel[w > 0][:20]
    dt = 1.7
    mine = orbits.propagate(pos, vel, np.full(len(pos), dt))
    jd = 2460000.5
    states = [kete.State(f"o{i}", kete.Time(jd, scaling="tdb"), list(p), list(v)) for i, (p, v) in enumerate(zip(pos, vel))]
    ref = np.array([list(s.pos) for s in kete.propagate_two_body(states, jd + dt)])
    np.testing.assert_allclose(mine, ref, atol=1e-9)


def test_earth_position_matches_astropy():
    from astropy.coordinates import get_body_barycentric, solar_system_ephemeris
    from astropy.time import Time

    mjd = np.array([56700.0, 58000.3, 60300.9])
    with solar_system_ephemeris.set("builtin"):
        t = Time(mjd, format="mjd", scale="tdb")
        e = get_body_barycentric("earth", t) - get_body_barycentric("sun", t)
    eq = np.stack([e.x.to_value("AU"), e.y.to_value("AU"), e.z.to_value("AU")], -1)
    c, s = np.cos(geo.OBLIQUITY), np.sin(geo.OBLIQUITY)
    ecl = np.stack([eq[:, 0], c * eq[:, 1] + s * eq[:, 2], -s * eq[:, 1] + c * eq[:, 2]], -1)
    np.testing.assert_allclose(geo.earth_position(mjd), ecl, atol=3e-4)


def test_galactic_latitude_matches_astropy():
    from astropy.coordinates import SkyCoord

    rng = np.random.default_rng(2)
    ra, dec = rng.uniform(0, 360, 50), np.rad2deg(np.arcsin(rng.uniform(-1, 1, 50)))
    ref = SkyCoord(ra=ra, dec=dec, unit="deg", frame="icrs").galactic.b.deg
    np.testing.assert_allclose(geo.galactic_latitude(geo.lonlat_to_unit(ra, dec)), ref, atol=1e-4)


def test_projection_round_trip():
    rng = np.random.default_rng(3)
    centre = geo.lonlat_to_unit(rng.uniform(0, 360, 5), rng.uniform(-80, 80, 5))
    x, y = rng.uniform(-500, 500, (2, 5))
    back = geo.deproject(x, y, centre, 2.75)
    x2, y2 = geo.project(back[:, None, :], centre, 2.75)
    np.testing.assert_allclose(np.c_[x2[:, 0], y2[:, 0]], np.c_[x, y], atol=1e-6)


def test_main_belt_rates_at_quadrature():
    """At 90 deg elongation main-belt objects move ~0.17-0.40 deg/day (sources note, via kete)."""
    rng = np.random.default_rng(4)
    n = 4000
    mjd = np.full(n, 58000.0)
    obs = geo.earth_position(mjd)
    sun = -obs / np.linalg.norm(obs, axis=1, keepdims=True)
    perp = np.cross([0, 0, 1.0], sun)
    perp /= np.linalg.norm(perp, axis=1, keepdims=True)
    pos, vel, delta, w = orbits.place_on_sightline(rng, obs, perp, *orbits.sample_elements(rng, n, "mba"))
    ok = rng.choice(n, n // 2, p=w / w.sum())              # resampled by the population's density
    later = orbits.propagate(pos[ok], vel[ok], np.full(len(ok), 1.0))
    obs1 = geo.earth_position(mjd[ok] + 1.0)
    u0 = (pos[ok] - obs[ok]) / np.linalg.norm(pos[ok] - obs[ok], axis=1, keepdims=True)
    u1 = (later - obs1) / np.linalg.norm(later - obs1, axis=1, keepdims=True)
    rate = np.rad2deg(np.arccos(np.clip(np.sum(u0 * u1, 1), -1, 1)))
    lo, hi = np.percentile(rate, [10, 90])
    assert 0.1 < lo < 0.25 and 0.3 < hi < 0.5


@pytest.mark.parametrize("inst", [NEOWISE, NEOSURVEYOR])
def test_snr_five_at_published_depth(inst):
    """A point source at the single-exposure 5-sigma depth is measured at SNR ~5."""
    rng = np.random.default_rng(5)
    frame = Frame(inst)
    M, P = 3000, 21
    depth = np.array(inst.depth_5sigma_mag)
    flux = 10 ** (-0.4 * (depth - frame.zp))
    x = (10 + rng.uniform(-0.5, 0.5, M)).astype(np.float32)
    y = (10 + rng.uniform(-0.5, 0.5, M)).astype(np.float32)
    F = np.broadcast_to(flux, (M, 1, 2)).astype(np.float32)
    sig = np.broadcast_to(frame.sigma_px, (M, 1, 2)).astype(np.float32)
    img = render.render_points(x[:, None], y[:, None], F, sig, P)
    noise = frame.pixel_noise(depth)
    img = img + rng.standard_normal(img.shape).astype(np.float32) * noise[None, :, None, None].astype(np.float32)
    m = render.measure(img, x, y, frame.sigma_px, np.zeros((M, 2)), np.broadcast_to(noise, (M, 2)))
    assert np.allclose(np.mean(m["snr"], axis=0), 5.0, atol=0.25)
    # Fitting the position as well widens the spread a little for undersampled PSFs.
    assert np.all((np.std(m["snr"], axis=0) > 0.9) & (np.std(m["snr"], axis=0) < 1.25))
    assert np.median(np.hypot(m["x"] - x, m["y"] - y)) < 0.6


# ------------------------------------------------------------------ truth that agrees with the pixels
def _candidates(survey, batches=3, seed=5, **settings):
    from neoqa.simulate import SimConfig, instruments
    from neoqa.simulate.generator import simulate_candidates

    inst = instruments.get(survey)
    rng = np.random.default_rng(seed)
    cfg = SimConfig(survey=survey, **settings)
    out = []
    for _ in range(batches):
        diag = {}
        out.append((simulate_candidates(rng, inst, cfg, 2048, diagnostics=diag), diag))
    return inst, out


OBJECTS = {"object": 2.0, "two_objects": 1.0}


@pytest.mark.parametrize("survey", ["neowise", "neosurveyor"])
def test_matching_radius_is_the_astrometric_scatter_at_threshold(survey):
    """The radius is the 99% containment of genuine detections' measured positions around their
    object's true position, at S/N 4.5-5.5 (near the detection threshold)."""
    inst, runs = _candidates(survey, scenario_weights={"object": 1.0})       # isolated objects
    d = np.concatenate([diag["scatter_px"] for _, diag in runs])
    s = np.concatenate([diag["scatter_snr"] for _, diag in runs])
    at = (s >= 4.5) & (s < 5.5)
    assert at.sum() > 2000
    assert abs(np.percentile(d[at], 99) - inst.match_radius_px) < 0.1 * inst.match_radius_px


def test_truth_counts_detections_that_hold_the_object():
    """The matching rule only adds observations that hold the object: labels go from false to real,
    never back. No detection is conjured next to a missed object any more, so a false detection
    lands on one only at the field's density, and the rule seldom changes a label (it did for 4.7%
    of 0.4.0's sheets, whose padding put one there a third of the time)."""
    _, runs = _candidates("neowise", scenario_weights=OBJECTS)
    old = np.concatenate([diag["clean_label_linked_only"] for _, diag in runs])
    new = np.concatenate([b.truth_sheet["clean_label"] for b, _ in runs])
    assert len(new) > 2000
    assert not np.any((old == 1) & (new == 0))
    assert np.mean(old != new) < 0.01
    for b, _ in runs:
        t = b.truth_obs
        held = t["object_id"] >= 0
        # a held observation is the object's own detection, or a detection where the object is
        assert np.all(np.isfinite(np.where(t["object_id"] == 0, t["object_x_px"], 0.0)))
        assert np.all(np.isfinite(np.where(t["object_id"] == 1, t["object2_x_px"], 0.0)))
        own = held & (t["source_kind"] == 0)
        x = np.where(t["object_id"][own] == 0, t["object_x_px"][own], t["object2_x_px"][own])
        np.testing.assert_allclose(x, t["true_x_px"][own], atol=1e-4)
        # false detections in object sheets are as rare as the field makes them (~1e-4 an exposure)
        assert np.mean(t["source_kind"] != 0) < 0.005


def test_object_positions_and_observer_in_every_exposure():
    from neoqa.data.schema import SCENARIOS

    _, runs = _candidates("neowise", batches=1, scenario_weights={"object": 0.3, "chance": 0.7})
    b = runs[0][0]
    t, sheet = b.truth_obs, np.repeat(np.arange(len(b)), b.k)
    scen = b.truth_sheet["scenario"][sheet]
    false_only = np.isin(scen, [SCENARIOS.index("chance"), SCENARIOS.index("artifact")])
    assert np.all(np.isnan(t["object_x_px"][false_only])) and np.all(np.isnan(t["object2_x_px"][false_only]))
    single = scen == SCENARIOS.index("object")
    assert np.isfinite(t["object_x_px"][single]).all() and np.isnan(t["object2_x_px"][single]).all()
    # WISE: the Earth plus a ~500 km terminator orbit (6,900 km from the geocentre)
    obs = np.stack([t["observer_x_au"], t["observer_y_au"], t["observer_z_au"]], axis=1)
    km = np.linalg.norm(obs - geo.earth_position(b.mjd), axis=1) * 1.495978707e8
    assert obs.dtype == np.float64 and np.all((km > 6700) & (km < 7100))


def _population_in_a_cone(rng, population, observer, direction, cone_deg, n):
    """Brute force: distances of a population's members (all six elements random) inside a cone."""
    a, e, i_scale = orbits.sample_elements(rng, n, population)
    inc = np.minimum(rng.rayleigh(i_scale), np.deg2rad(80.0))
    M, node, peri = rng.uniform(0, 2 * np.pi, (3, n))
    E = M.copy()
    for _ in range(30):
        E -= (E - e * np.sin(E) - M) / (1 - e * np.cos(E))
    xo, yo = a * (np.cos(E) - e), a * np.sqrt(1 - e * e) * np.sin(E)
    cw, sw, cn, sn, ci, si = np.cos(peri), np.sin(peri), np.cos(node), np.sin(node), np.cos(inc), np.sin(inc)
    p = np.stack([(cn * cw - sn * sw * ci) * xo - (cn * sw + sn * cw * ci) * yo,
                  (sn * cw + cn * sw * ci) * xo + (cn * cw * ci - sn * sw) * yo,
                  sw * si * xo + cw * si * yo], -1)
    v = p - observer
    s = np.linalg.norm(v, axis=1)
    return s[(v @ direction) / s > np.cos(np.deg2rad(cone_deg))]


@pytest.mark.parametrize("population,lat,n", [("mba", 0.0, 1_000_000), ("neo", 15.0, 2_000_000)])
def test_sightline_weights_reproduce_the_population_along_the_line(population, lat, n):
    """place_on_sightline's weighted draws follow the population's spatial density along the sight
    line: the distances of a brute-force population (random node, perihelion and mean anomaly) inside
    a 5-degree cone, at 90 deg elongation, in quantiles to a few per cent."""
    rng = np.random.default_rng(8)
    observer = np.array([1.0, 0.0, 0.0])
    d = geo.lonlat_to_unit(np.array([90.0]), np.array([lat]))[0]
    truth = _population_in_a_cone(rng, population, observer, d, 5.0, n)
    m = 200_000
    _, _, delta, w = orbits.place_on_sightline(rng, np.tile(observer, (m, 1)), np.tile(d, (m, 1)),
                                               *orbits.sample_elements(rng, m, population))
    order = np.argsort(delta)
    c = np.cumsum(w[order]) / w.sum()
    q = np.array([0.1, 0.25, 0.5, 0.75, 0.9])
    assert len(truth) > 2000
    np.testing.assert_allclose(delta[order][np.searchsorted(c, q)], np.quantile(truth, q), rtol=0.03)
    # For NEOs the unweighted proposal is visibly different: the weights do the work.
    if population == "neo":
        assert np.max(np.abs(np.quantile(delta[w > 0], q) / np.quantile(truth, q) - 1)) > 0.05


def test_size_laws_are_the_cited_ones():
    """NEO sizes: N(>100 m) / N(>1 km) = 10^1.32 (Mainzer et al. 2011: 20,500 and 981); main-belt H:
    10^0.51 per magnitude brighter than 15 and 10^0.38 fainter (Gladman et al. 2009); truncated draws
    follow the law above their bound."""
    neo, mba = population.NEO_SIZES, population.MBA_H
    share = lambda d: neo.cdf(-np.log(d))                      # noqa: E731  N(>D) / N(>10 m)
    assert share(0.1) / share(1.0) == pytest.approx(10**1.32, rel=1e-3)
    assert share(0.1) / share(1.0) == pytest.approx(20500 / 981, rel=0.02)
    assert mba.cdf(14.0) / mba.cdf(13.0) == pytest.approx(10**0.51, rel=5e-3)
    assert mba.cdf(19.0) / mba.cdf(18.0) == pytest.approx(10**0.38, rel=5e-3)
    rng = np.random.default_rng(9)
    d = np.exp(-neo.sample_below(rng, np.full(200_000, -np.log(0.05))))    # D >= 50 m
    assert d.min() >= 0.05 - 1e-12
    for lo, hi in ((0.05, 0.5), (0.2, 1.0), (2.0, 4.0)):
        expect = (neo.cdf(-np.log(lo)) - neo.cdf(-np.log(hi))) / neo.cdf(-np.log(0.05))
        assert np.mean((d >= lo) & (d < hi)) == pytest.approx(expect, abs=0.005)
    h = mba.sample_below(rng, np.full(200_000, 17.0))
    assert h.max() <= 17.0 and np.mean(h < 15.0) == pytest.approx(mba.cdf(15.0) / mba.cdf(17.0), abs=0.005)


def test_population_checks_against_the_sources(large_batch):
    """Real sheets' objects where the sources put them: NEOs at NEOWISE's geometry mostly sub-2-km,
    moving fast (0.5-1.4 deg/day the commonest), under 1 AU at the median; main-belt objects at
    0.17-0.40 deg/day; every object detectable (expected S/N >= 2.5) and no S/N drawn for it.
    Measured values, and what the issue asked that these do not reach, are in docs/simulator.md."""
    t = large_batch.truth_sheet
    real = t["clean_label"] == 1
    neo, mba = real & (t["object_class"] == 2), real & (t["object_class"] == 1)
    rate = t["true_rate_deg_per_day"]
    assert neo.sum() > 100 and mba.sum() > 250
    assert np.median(t["delta_au"][neo]) < 1.0
    assert np.mean(t["delta_au"][neo] < 0.6) > 0.15
    assert np.median(rate[neo]) > 0.5 and np.mean((rate[neo] >= 0.5) & (rate[neo] <= 1.4)) > 0.4
    assert np.median(t["diameter_km"][neo]) < 2.0 and np.mean(t["diameter_km"][neo] > 10) < 0.1
    assert np.mean((rate[mba] >= 0.17) & (rate[mba] <= 0.40)) > 0.8
    assert np.median(rate[neo]) > 1.7 * np.median(rate[mba])
    has = t["object_class"] > 0
    assert np.all(t["true_snr"][has] >= 2.5 - 1e-4)
