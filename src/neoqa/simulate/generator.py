"""One batch of simulated QA sheets, from sky geometry to measured scalars.

The flow for a batch of candidates (all steps vectorised over sheets or exposures):
  1. survey geometry: time, pointing, the exposure slots around it, the observer's place;
  2. the scene: the moving object(s) on the sight line, propagated along their orbits, seen in
     the exposures whose coverage follows them; or the false tracklet a linker strings through
     the false detections of an exposure's field (``field``); what sits at each exposure;
  3. rendering of a patch per exposure (PSF, stars, artifacts, sky, noise);
  4. the pipeline: measure each candidate detection, apply the detection cuts, stationary and
     artifact rejection, link within tolerance of a linear motion, keep the longest chain, fit it;
  5. the QA sheet: cutouts recentred on the fitted motion, the composite, scalars
     measured from pixels, and the truth kept apart.
The label is the rule applied to truth, never an input: a sheet is real iff at
least ``LABEL_MIN_OBS`` (5) observations hold the same moving object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neoqa.data.schema import CUTOUT_SIZE, LABEL_MIN_OBS, OBS_SCALARS, SCENARIOS, SHEET_SCALARS, SOURCE_CODE
from neoqa.data.sheets import WCS_FIELDS, SheetBatch, composite
from neoqa.data import motion
from neoqa.data.photometry import composite_noise, composite_snr, near_star_flag
from neoqa.data.summaries import summarise
from neoqa.simulate import field, kernels, linker, orbits, population, render, geometry as geo
from neoqa.simulate.config import SimConfig
from neoqa.simulate.photometry import Frame
from neoqa.simulate.instruments import Instrument

S = CUTOUT_SIZE
KIND = SOURCE_CODE
EMPTY = -1
SC = {name: i for i, name in enumerate(SCENARIOS)}
MAX_EPOCHS = 50
# Source widths in units of the band's PSF sigma: a point source, a hot pixel, a cosmic
# ray (both sharper than the PSF) and a ghost (broader).
WIDTHS = np.array([1.0, 0.12, 0.3, 1.6])
POINT, HOT_PIXEL, COSMIC_RAY, GHOST = range(4)
# A patch's source slots: the primary (the object, or the false tracklet's detection), the secondary
# (a second object, or a false detection within tolerance), the bright star, field stars, then false
# detections elsewhere in the patch.
PRIMARY, SECONDARY, STAR = 0, 1, 2
N_EXTRA = 2
SEARCH = 2.0           # the linker looks for a chain's next detection within this many tolerances
MAX_DROPS = 3          # detections the motion fit may drop as beyond tolerance
FIELD_CODES = np.array([KIND[k] for k in field.FIELD_KINDS])


def _choice(rng, weights: dict, n, names):
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    idx = rng.choice(len(keys), size=n, p=p / p.sum())
    return np.array([names[k] for k in keys])[idx]


def _disk(rng, n, radius):
    r = radius * np.sqrt(rng.random(n))
    a = rng.uniform(0, 2 * np.pi, n)
    return r * np.cos(a), r * np.sin(a)


def _pick(rng, weights):
    """One column per row of ``weights`` [m, K], drawn in proportion (rows must have weight)."""
    c = np.cumsum(weights, axis=1)
    return np.argmax(c >= rng.random(len(c))[:, None] * c[:, -1:], axis=1)


def _observer(inst, times, phase0):
    """The observatory at ``times``; phase0 (WISE's orbital phase) broadcasts against them."""
    return geo.observer_position(inst.observer, times, phase0 if inst.observer == "wise" else 0.0)


# ------------------------------------------------------------------ the steps' products
@dataclass
class Survey:
    """Step 1: each candidate's exposure slots [n, MAX_EPOCHS] (``avail``: the slot is an
    exposure that was not lost; whether it covers the target is the scene's business), its
    pointing (on the tangent plane's centre), the mid-time and the observatory there, and what
    coverage needs: WISE's scan (``cov``: a, bx, by per slot, see ``field.hypothesis_p``) or NEO
    Surveyor's field (``box``: centre and half-widths, px)."""
    times: np.ndarray
    avail: np.ndarray
    pointing_ecl: np.ndarray
    centre_eq: np.ndarray
    t_mid: np.ndarray
    phase0: np.ndarray
    obs_mid: np.ndarray
    cov: np.ndarray
    box: np.ndarray


@dataclass
class Scene:
    """Step 2: what sits at each exposure, flat over the candidates' exposures (si, ei).

    The primary (``kind_p`` at ``anc``; ``oid_p`` 0 for object A) and the secondary (``kind_s`` at
    ``sec``; ``oid_s`` 1 for object B), the false detections elsewhere in the patch (``extra``),
    the linker's prediction (``pred``) and the patch centre (``cx, cy``), all in tangent-plane
    pixels about ``Survey.centre_eq``; ``ax, ay`` [n, E] is object A's track, ``mask`` the
    exposures each candidate has; ``star`` [n, 11] the artifact tracklets' bright stars
    (``field.STAR_COLS``) with ``star_flux`` [n, C]; ``obj_flux`` [M, 2, C] the objects' flux."""
    scenario: np.ndarray
    has_obj: np.ndarray
    objA: dict
    objB: dict
    mask: np.ndarray
    ax: np.ndarray
    ay: np.ndarray
    si: np.ndarray
    ei: np.ndarray
    dtm: np.ndarray
    kind_p: np.ndarray
    oid_p: np.ndarray
    anc_x: np.ndarray
    anc_y: np.ndarray
    kind_s: np.ndarray
    oid_s: np.ndarray
    sec_x: np.ndarray
    sec_y: np.ndarray
    extra_kind: np.ndarray
    extra_x: np.ndarray
    extra_y: np.ndarray
    pred_x: np.ndarray
    pred_y: np.ndarray
    cx: np.ndarray
    cy: np.ndarray
    star: np.ndarray
    star_flux: np.ndarray
    obj_flux: np.ndarray
    noise_band: np.ndarray


@dataclass
class Exposures:
    """Step 3: the rendered patches and the primary's measurement. Sources are slots
    [primary, secondary, bright star, field stars..., extras] in patch pixels (X, Y [M, NS];
    F [M, NS, C]; W the profile width index)."""
    img: np.ndarray
    sky: np.ndarray
    mp: dict
    X: np.ndarray
    Y: np.ndarray
    F: np.ndarray
    W: np.ndarray
    star_cat: np.ndarray
    star_mag: np.ndarray
    sig_f: np.ndarray
    noise_est: np.ndarray
    tables: np.ndarray
    length: int


@dataclass
class Links:
    """Step 4: what the pipeline kept and linked, its measurements, the truth of each
    detection and the linear-motion fit per candidate (``keep``: it becomes a sheet)."""
    meas: dict
    kind: np.ndarray
    oid: np.ndarray
    oid_linked: np.ndarray
    true_x: np.ndarray
    true_y: np.ndarray
    linked: np.ndarray
    here_b: np.ndarray
    gx: np.ndarray
    gy: np.ndarray
    pred_x: np.ndarray
    pred_y: np.ndarray
    k: np.ndarray
    keep: np.ndarray


# ------------------------------------------------------------------ the batch
def simulate_candidates(rng, inst: Instrument, cfg: SimConfig, n: int, diagnostics: dict | None = None
                        ) -> SheetBatch | None:
    """Simulate ``n`` candidate tracklets; return the ones the linker accepts.

    The five steps of the module docstring, in the order they draw random numbers.
    ``diagnostics``, where given, receives arrays the checks of the physics need and the data do
    not hold (the astrometric scatter of genuine detections; the label under the old truth rule);
    it draws no random numbers, so the sheets are the same with or without it."""
    frame = Frame(inst)
    survey = _geometry(rng, inst, n)
    scene = _scene(rng, inst, cfg, frame, survey)
    exposures = _render(rng, inst, cfg, frame, survey, scene)
    links = _pipeline(inst, cfg, frame, survey, scene, exposures, diagnostics)
    if not links.keep.any():
        return None
    return _assemble(inst, cfg, frame, survey, scene, exposures, links, diagnostics)


# ------------------------------------------------------------------ 1. geometry
def _geometry(rng, inst: Instrument, n: int) -> Survey:
    """Pointing at the mid-time and the exposure slots around it.

    WISE scans the great circle at 90 deg from the Sun, one frame per orbit (EW): slot j is the
    orbit j - 24 from the mid-time, and a position is seen in the orbits whose scan passes within
    the frame's half-width of it (``coverage``: about 12 / cos(latitude) orbits for a fixed star,
    ES-Prelim I.4.d). NEO Surveyor returns to a field four times in ~8 h, six exposures a visit
    (B21). Pointings lie within 30 deg (WISE) or 25 deg (NEOS) of the ecliptic for 70% of the
    candidates, where the asteroids concentrate (SETTING)."""
    t_mid = rng.uniform(*inst.mjd_range, n)
    earth = geo.earth_position(t_mid)
    sun_dir = -earth / np.linalg.norm(earth, axis=-1, keepdims=True)
    sun_lon = np.rad2deg(np.arctan2(sun_dir[:, 1], sun_dir[:, 0]))
    side = np.where(rng.random(n) < 0.5, 1.0, -1.0)          # leading or trailing
    near = rng.random(n) < 0.7
    E = MAX_EPOCHS
    if inst.cadence == "wise":
        lat = np.where(near, rng.uniform(-30, 30, n), np.rad2deg(np.arcsin(rng.uniform(-1, 1, n))))
        lon = sun_lon + side * 90.0
        j = np.arange(E) - (E // 2 - 1)
        times = t_mid[:, None] + j[None, :] * geo.WISE_ORBIT_PERIOD_DAY + rng.normal(0, 2e-4, (n, E))
        avail = rng.random((n, E)) >= inst.frame_loss
    else:
        lat = np.where(near, rng.uniform(-25, 25, n), rng.uniform(-40, 40, n))     # +-40 deg (B21)
        lon = sun_lon + side * rng.uniform(45, 120, n)                               # 45-120 deg (B21)
        k = np.arange(24)
        visit_t = (np.arange(4) - 1.5)[None, :] * (2.0 / 24) + rng.normal(0, 10 / 1440, (n, 4))
        times = np.repeat(t_mid[:, None], E, axis=1)
        times[:, :24] = t_mid[:, None] + visit_t[:, k // 6] + (k % 6 - 2.5)[None, :] * (42.0 / 86400)
        avail = np.zeros((n, E), bool)
        avail[:, :24] = rng.random((n, 24)) >= inst.frame_loss
    pointing_ecl = geo.lonlat_to_unit(lon, lat)
    centre_eq = geo.ecliptic_to_equatorial(pointing_ecl)
    phase0 = rng.uniform(0, 2 * np.pi, n)
    cov, box = np.zeros((n, 3, E)), np.zeros((n, 4))
    if inst.cadence == "wise":
        sun = -geo.earth_position(times)
        sun_eq = geo.ecliptic_to_equatorial(sun / np.linalg.norm(sun, axis=-1, keepdims=True))
        east, north = geo.tangent_basis(centre_eq)
        k_rad = _k_rad(inst)
        cov[:, 0] = np.einsum("nk,nek->ne", centre_eq, sun_eq)
        cov[:, 1] = -k_rad * np.einsum("nk,nek->ne", east, sun_eq)
        cov[:, 2] = k_rad * np.einsum("nk,nek->ne", north, sun_eq)
    else:
        hw = np.array(inst.field_halfwidth_deg) * 3600.0 / inst.pixel_scale_arcsec
        box[:, 0] = rng.uniform(-hw[0], hw[0], n)              # where the target sits in the field
        box[:, 1] = rng.uniform(-hw[1], hw[1], n)
        box[:, 2:] = hw
    return Survey(times, avail, pointing_ecl, centre_eq, t_mid, phase0, _observer(inst, t_mid, phase0), cov, box)


def _k_rad(inst):
    return np.deg2rad(inst.pixel_scale_arcsec / 3600.0)


def _covered(inst: Instrument, sv: Survey, rows, x, y):
    """Whether tracks (x, y) [m, E] (tangent-plane px) of candidates ``rows`` are in the survey's
    coverage at each slot (the same test as ``field.hypothesis_p``)."""
    if inst.cadence == "wise":
        k = _k_rad(inst)
        c = sv.cov[rows]
        f = (c[:, 0] + c[:, 1] * x + c[:, 2] * y) / np.sqrt(1 + k * k * (x * x + y * y))
        return np.abs(f) <= np.sin(np.deg2rad(inst.field_halfwidth_deg[0]))
    b = sv.box[rows]
    return (np.abs(x - b[:, 0, None]) <= b[:, 2, None]) & (np.abs(y - b[:, 1, None]) <= b[:, 3, None])


# ------------------------------------------------------------------ 2. the scene
def _objects(rng, inst, cfg, frame, rows, n, observer, direction, t_ref):
    """Objects on the sight lines ``direction`` [m, 3] (ecliptic) seen from ``observer`` [m, 3] at
    ``t_ref`` [m], for candidates ``rows`` (``population.draw_objects``), as [n] arrays.

    Rows not asked for, and rows where no detectable member of the population lies on the sight
    line, have ok False and a placeholder orbit that is never rendered."""
    m = len(rows)
    cls = np.where(rng.random(m) < cfg.neo_fraction, population.NEO, population.MBA)
    got = population.draw_objects(rng, inst, frame, cls, observer, direction, cfg.min_object_snr)
    pos, ok = got["pos"], got["ok"]
    r = np.linalg.norm(pos, axis=-1)
    o2o = observer - pos
    phase = np.rad2deg(np.arccos(np.clip(np.sum(-pos * o2o, -1) / (r * np.linalg.norm(o2o, axis=-1)), -1, 1)))
    # a rotational light curve (SETTING): amplitude, period, phase
    lc = np.stack([rng.uniform(*cfg.lightcurve_amp_mag, m), rng.uniform(3, 12, m) / 24,
                   rng.uniform(0, 2 * np.pi, m)], 1)
    part = {"cls": np.where(ok, cls, 0), "pos": pos, "vel": got["vel"], "ok": ok,
            "flux_dn": frame.jy_to_dn(got["flux1_jy"]) * np.nan_to_num(got["diameter"])[:, None] ** 2,
            "diameter": got["diameter"], "pv": got["pv"], "beaming": got["beaming"], "r": r,
            "delta": got["delta"], "phase": phase, "snr": got["snr"], "t_ref": t_ref, "lc": lc}
    full = {"cls": np.zeros(n, np.int64), "ok": np.zeros(n, bool), "pos": np.tile([2.5, 0.0, 0.0], (n, 1)),
            "vel": np.tile([0.0, np.sqrt(orbits.GM_SUN / 2.5), 0.0], (n, 1)), "delta": np.full(n, 1.5),
            "flux_dn": np.zeros((n, 2)), "t_ref": np.zeros(n), "lc": np.zeros((n, 3))}
    for key, value in part.items():
        if key not in full:
            full[key] = np.full(n, np.nan)
        full[key][rows] = value
    return full


def _coarse_track(inst, sv: Survey, obj, rows):
    """Tangent-plane track [m, E] (px) of objects ``rows`` at every slot, to second order in time
    (ample for coverage: 1e-5 rad over a day, against a 0.4-deg half-width)."""
    pos, vel = obj["pos"][rows, None, :], obj["vel"][rows, None, :]
    dt = (sv.times[rows] - obj["t_ref"][rows, None])[..., None]
    r3 = np.linalg.norm(pos, axis=-1, keepdims=True) ** 3
    p = pos + vel * dt - 0.5 * orbits.GM_SUN * pos / r3 * dt**2
    v = geo.ecliptic_to_equatorial(p - _observer(inst, sv.times[rows], sv.phase0[rows, None])[..., :])
    v /= np.linalg.norm(v, axis=-1, keepdims=True)
    return geo.project(v, sv.centre_eq[rows], inst.pixel_scale_arcsec)


def _exact_track(inst, sv: Survey, obj, si, ei):
    """Tangent-plane positions (px) of each object at exposures (si, ei), two-body propagated
    from its reference time and light-time corrected, seen from the observatory then."""
    pos, vel = obj["pos"][si], obj["vel"][si]
    dt = sv.times[si, ei] - obj["t_ref"][si]
    obs = _observer(inst, sv.times[si, ei], sv.phase0[si])
    p = orbits.propagate(pos, vel, dt)
    lt = np.linalg.norm(p - obs, axis=-1) / geo.C_AU_PER_DAY
    v = orbits.propagate(pos, vel, dt - lt) - obs
    d = geo.ecliptic_to_equatorial(v / np.linalg.norm(v, axis=-1, keepdims=True))
    x, y = geo.project(d[:, None, :], sv.centre_eq[si], inst.pixel_scale_arcsec)
    return x[:, 0], y[:, 0]


def _scene(rng, inst: Instrument, cfg: SimConfig, frame: Frame, sv: Survey) -> Scene:
    """The scenario of each candidate, its objects seen where the survey's coverage follows them,
    or the false tracklet the linker makes of the exposures' false detections, and what sits at
    each exposure."""
    n, E = sv.avail.shape
    tol = inst.link_tolerance_px
    scenario = _choice(rng, cfg.scenario_weights, n, SC)
    density, band_share = field.field_density(inst, cfg, geo.galactic_latitude(sv.centre_eq),
                                              geo.unit_to_lonlat(sv.pointing_ecl)[1])
    lam_field = density.sum(1)

    # Object A on the pointing's sight line at the mid-time, seen where the coverage follows it.
    rows = np.flatnonzero(np.isin(scenario, [SC["object"], SC["two_objects"]]))
    objA = _objects(rng, inst, cfg, frame, rows, n, sv.obs_mid[rows], sv.pointing_ecl[rows], sv.t_mid[rows])
    mask = np.zeros((n, E), bool)
    rows = rows[objA["ok"][rows]]
    coarse_x, coarse_y = np.zeros((n, E)), np.zeros((n, E))
    coarse_x[rows], coarse_y[rows] = _coarse_track(inst, sv, objA, rows)
    mask[rows] = sv.avail[rows] & _covered(inst, sv, rows, coarse_x[rows], coarse_y[rows])

    # Object B: a second object of the population that crosses A's track within the linker's
    # tolerance at one of A's exposures (drawn on the sight line there), with its own orbit.
    two = rows[(scenario[rows] == SC["two_objects"]) & mask[rows].any(1)]
    e_star = _pick(rng, mask[two].astype(float))
    bx, by = _disk(rng, len(two), tol)
    look = geo.deproject(coarse_x[two, e_star] + bx, coarse_y[two, e_star] + by, sv.centre_eq[two],
                         inst.pixel_scale_arcsec)
    t_star = sv.times[two, e_star]
    objB = _objects(rng, inst, cfg, frame, two, n, _observer(inst, t_star, sv.phase0[two]),
                    geo.equatorial_to_ecliptic(look), t_star)
    has_obj = np.zeros(n, bool)
    has_obj[rows] = mask[rows].any(1)
    scenario = np.where(np.isin(scenario, [SC["object"], SC["two_objects"]]) & ~has_obj, SC["chance"], scenario)
    scenario = np.where((scenario == SC["two_objects"]) & ~objB["ok"], SC["object"], scenario)

    # False tracklets: the linker's hypotheses through the field (and a bright star's features).
    star = np.zeros((n, len(field.STAR_COLS)))
    star_flux = np.zeros((n, 2))
    hyp_v = np.zeros((n, 2))
    hits = np.zeros((n, E), bool)
    for scen, artifact in ((SC["chance"], False), (SC["artifact"], True)):
        hr = np.flatnonzero(scenario == scen)
        got = _hypotheses(rng, inst, cfg, frame, sv, hr, lam_field, artifact)
        mask[hr], hits[hr], hyp_v[hr], star[hr], star_flux[hr] = got

    # A's exact track where it is seen; the linker's prediction: the line through it (objects),
    # the hypothesis (false tracklets).
    si, ei = np.nonzero(mask)
    M = len(si)
    dtm = sv.times[si, ei] - sv.t_mid[si]
    ax, ay = np.zeros((n, E)), np.zeros((n, E))
    obj_rows = has_obj[si]
    ax[si[obj_rows], ei[obj_rows]], ay[si[obj_rows], ei[obj_rows]] = _exact_track(inst, sv, objA, si[obj_rows],
                                                                                  ei[obj_rows])
    offsets = np.concatenate([[0], np.cumsum(mask.sum(1))])
    line_x, line_y, _, _ = motion.fit_tracklets(offsets, dtm, ax[si, ei], ay[si, ei], np.ones(M, bool), 0.0, 0)
    pred_x = np.where(obj_rows, line_x, hyp_v[si, 0] * dtm)
    pred_y = np.where(obj_rows, line_y, hyp_v[si, 1] * dtm)

    # The primary: object A, or the false tracklet's detection where it holds one.
    kind_p = np.full(M, EMPTY)
    oid_p = np.full(M, -1)
    kind_p[obj_rows] = KIND["object"]
    oid_p[obj_rows] = 0
    anc_x = np.where(obj_rows, ax[si, ei], pred_x)
    anc_y = np.where(obj_rows, ay[si, ei], pred_y)
    noise_band = rng.choice(2, size=M, p=band_share)
    h = np.flatnonzero(hits[si, ei])
    hs = si[h]
    comp = field.components_at(pred_x[h], pred_y[h], star[hs], lam_field[hs] * np.pi * tol**2, tol,
                               cfg.spike_inner_px, *field.feature_densities(cfg), cfg.blob_radius_px)
    which = _pick(rng, comp)
    kind_h = np.where(which == field.FIELD, FIELD_CODES[_pick(rng, density[hs])],
                      np.array(field.COMPONENT_KIND)[which])
    kind_p[h] = kind_h
    anc_x[h], anc_y[h] = field.place_hits(rng, which, pred_x[h], pred_y[h], star[hs], tol, cfg.spike_inner_px,
                                          cfg.blob_radius_px)

    # The secondary: object B wherever it passes through the patch, else a false detection within
    # tolerance of the prediction, at the field's density (rare: ~1e-4 an exposure).
    cx, cy = np.rint(anc_x), np.rint(anc_y)
    kind_s = np.full(M, EMPTY)
    oid_s = np.full(M, -1)
    sec_x, sec_y = pred_x.copy(), pred_y.copy()
    b_rows = (scenario == SC["two_objects"])[si]
    bxs, bys = _exact_track(inst, sv, objB, si[b_rows], ei[b_rows])
    reach = S // 2 + cfg.margin_px + 2                           # B's light reaches the patch
    inside = (np.abs(bxs - cx[b_rows]) <= reach) & (np.abs(bys - cy[b_rows]) <= reach)
    b_at = np.flatnonzero(b_rows)[inside]
    kind_s[b_at], oid_s[b_at] = KIND["object"], 1
    sec_x[b_at], sec_y[b_at] = bxs[inside], bys[inside]
    near = obj_rows & ~b_rows & (rng.random(M) < -np.expm1(-lam_field[si] * np.pi * tol**2))
    q = np.flatnonzero(near)
    kind_s[q] = FIELD_CODES[_pick(rng, density[si[q]])]
    dx, dy = _disk(rng, len(q), tol)
    sec_x[q], sec_y[q] = pred_x[q] + dx, pred_y[q] + dy

    # False detections elsewhere in the patch (the noise's own peaks are in the noise already).
    P = S + 2 * cfg.margin_px
    others = density[si, 1:].sum(1)
    count = np.minimum(rng.poisson(others * P * P), N_EXTRA)
    extra_kind = np.full((M, N_EXTRA), EMPTY)
    extra_x, extra_y = np.zeros((M, N_EXTRA)), np.zeros((M, N_EXTRA))
    r, j = np.nonzero(np.arange(N_EXTRA)[None, :] < count[:, None])
    extra_kind[r, j] = FIELD_CODES[1 + _pick(rng, density[si[r], 1:])]
    extra_x[r, j] = cx[r] + rng.uniform(-P / 2, P / 2, len(r))
    extra_y[r, j] = cy[r] + rng.uniform(-P / 2, P / 2, len(r))

    obj_flux = np.zeros((M, 2, 2))
    o = np.flatnonzero(obj_rows)
    obj_flux[o, 0] = objA["flux_dn"][si[o]] * _lightcurve(objA, si[o], sv.times[si[o], ei[o]])[:, None]
    obj_flux[b_at, 1] = objB["flux_dn"][si[b_at]] * _lightcurve(objB, si[b_at], sv.times[si[b_at], ei[b_at]])[:, None]
    return Scene(scenario, has_obj, objA, objB, mask, ax, ay, si, ei, dtm, kind_p, oid_p, anc_x, anc_y, kind_s,
                 oid_s, sec_x, sec_y, extra_kind, extra_x, extra_y, pred_x, pred_y, cx, cy, star, star_flux,
                 obj_flux, noise_band)


def _lightcurve(obj, si, t):
    amp, period, phase = obj["lc"][si].T
    return 10 ** (-0.2 * amp * np.sin(2 * np.pi * t / np.maximum(period, 1e-3) + phase))


def _hypotheses(rng, inst: Instrument, cfg: SimConfig, frame: Frame, sv: Survey, rows, lam_field, artifact):
    """False tracklets of candidates ``rows``: the linker's hypothesis each became, the exposures it
    is seen in and which of them hold a detection within tolerance, drawn given that a chain
    formed (``field`` module docstring). Artifact tracklets pass a bright star, drawn with its
    position near the hypothesis at a random slot (the importance weight undoes that choice).

    Returns mask, hits [m, E], velocity [m, 2] (px/day), star [m, 11] and its flux [m, C]; a
    candidate no hypothesis of which the linker could accept has no exposures."""
    n, E = sv.avail.shape
    m = len(rows)
    T = cfg.artifact_tries if artifact else cfg.hypothesis_tries
    tol, scale = inst.link_tolerance_px, inst.pixel_scale_arcsec
    out_mask, out_hits = np.zeros((m, E), bool), np.zeros((m, E), bool)
    out_v, out_star, out_flux = np.zeros((m, 2)), np.zeros((m, len(field.STAR_COLS))), np.zeros((m, 2))
    if m == 0:
        return out_mask, out_hits, out_v, out_star, out_flux
    cand = np.repeat(rows, T)
    rmin, rmax = inst.rate_window_deg_per_day
    rate = np.sqrt(rng.uniform(rmin**2, rmax**2, m * T)) * 3600.0 / scale      # px/day
    pa = rng.uniform(0, 2 * np.pi, m * T)
    vx, vy = -np.sin(pa) * rate, np.cos(pa) * rate
    dt = sv.times - sv.t_mid[:, None]
    table = np.zeros((m * T, len(field.STAR_COLS)))
    reach = np.zeros(m * T)
    if artifact:
        stars = field.Stars(rng, inst, cfg, frame, m * T)
        j = rng.integers(0, E, m * T)
        reach = stars.extent + tol
        ox, oy = _disk(rng, m * T, 1.0)
        table = stars.table(vx * dt[cand, j] + reach * ox, vy * dt[cand, j] + reach * oy)
    args = (dt, sv.avail, sv.cov, _k_rad(inst), np.sin(np.deg2rad(inst.field_halfwidth_deg[0])), inst.cadence != "wise",
            sv.box, lam_field)
    features = (tol, cfg.spike_inner_px, *field.feature_densities(cfg), cfg.blob_radius_px)
    weight = field.hypothesis_weights(cand, vx, vy, *args, table, *features, inst.min_links, inst.max_gap, reach)
    pick = population.resample(rng, weight, T)
    ok = pick >= 0
    u = rng.random((m, E))
    chosen = pick[ok]
    p = field.hypothesis_p(cand[chosen], vx[chosen], vy[chosen], *args, table[chosen], *features)
    out_hits[ok] = linker.sample_accepted(p, u[ok], inst.min_links, inst.max_gap)
    out_mask[ok] = p >= 0
    out_v[ok] = np.stack([vx[chosen], vy[chosen]], 1)
    if artifact:
        out_star[ok] = table[chosen]
        out_flux[ok] = stars.flux[chosen]
    return out_mask, out_hits, out_v, out_star, out_flux


# ------------------------------------------------------------------ 3. rendering
def _render(rng, inst: Instrument, cfg: SimConfig, frame: Frame, sv: Survey, sn: Scene) -> Exposures:
    """Every exposure's patch (sources, the bright star's features, field stars, sky, noise,
    saturation), its sky level, and the primary measured from it (one compiled pass)."""
    n = sv.avail.shape[0]
    si, M, C = sn.si, len(sn.si), 2
    scale = inst.pixel_scale_arcsec
    P = S + 2 * cfg.margin_px
    half = P // 2
    # Per-exposure noise (depth varies with background: WISE jitter, NEOS zodiacal level).
    depth_lo, depth_hi = np.array(inst.depth_5sigma_mag), np.array(inst.depth_5sigma_mag_bright)
    zodi = rng.random(n)[si, None]
    depth = depth_lo + (depth_hi - depth_lo) * zodi + rng.normal(0, inst.depth_jitter_mag, (M, 1))
    sig_pix = frame.pixel_noise(depth)                           # [M, C]
    sig_f = frame.flux_noise_dn(depth)                           # [M, C]

    NF = cfg.max_field_stars
    NS = 3 + NF + N_EXTRA
    X = np.full((M, NS), -100.0); Y = np.full((M, NS), -100.0)  # off the patch unless placed
    F = np.zeros((M, NS, C)); W = np.zeros((M, NS), np.int64)      # index into WIDTHS
    peak = np.zeros((M, NS), bool)
    star_cat = np.zeros((M, NS), bool)                           # catalogued stars (for rejection)
    star_mag = np.full((M, NS), np.nan)
    slots = (X, Y, F, W, peak)
    ox, oy = sn.cx - half, sn.cy - half                           # tangent plane -> patch pixels
    _place(rng, frame, sn, slots, PRIMARY, sn.kind_p, sn.anc_x - ox, sn.anc_y - oy, sn.oid_p, sig_f, inst)
    _place(rng, frame, sn, slots, SECONDARY, sn.kind_s, sn.sec_x - ox, sn.sec_y - oy, sn.oid_s, sig_f, inst)
    for j in range(N_EXTRA):
        _place(rng, frame, sn, slots, 3 + NF + j, sn.extra_kind[:, j], sn.extra_x[:, j] - ox,
               sn.extra_y[:, j] - oy, np.full(M, -1), sig_f, inst)

    # The artifact tracklet's bright star: catalogued, with spikes and a halo ring.
    has_star = sn.star_flux[si, 0] > 0
    X[has_star, STAR] = sn.star[si, 0][has_star] - ox[has_star]
    Y[has_star, STAR] = sn.star[si, 1][has_star] - oy[has_star]
    F[:, STAR] = sn.star_flux[si]
    star_cat[has_star, STAR] = True
    star_mag[has_star, STAR] = -2.5 * np.log10(sn.star_flux[si, 0][has_star]) + frame.zp[0]
    ring_r = np.where(has_star, sn.star[si, 3], 5.0)

    # Field stars: density by galactic latitude, magnitudes from the counts slope.
    blat = geo.galactic_latitude(sv.centre_eq)[si]
    m_faint = depth_lo[0] + 1.5
    dens = cfg.star_density_pole * (1 + cfg.star_plane_boost * np.exp(-np.abs(blat) / cfg.star_plane_scale_deg))
    area = (P * scale / 3600.0) ** 2
    nstar = np.minimum(rng.poisson(dens * area), NF)
    u_min = 10 ** (cfg.star_count_slope * (6.0 - m_faint))
    r, j = np.nonzero(np.arange(NF)[None, :] < nstar[:, None])
    j += 3
    q = len(r)
    m1 = m_faint + np.log10(rng.uniform(u_min, 1.0, q)) / cfg.star_count_slope
    X[r, j] = rng.uniform(-0.5, P - 0.5, q)
    Y[r, j] = rng.uniform(-0.5, P - 0.5, q)
    F[r, j, 0] = 10 ** (-0.4 * (m1 - frame.zp[0]))
    F[r, j, 1] = 10 ** (-0.4 * (m1 - rng.normal(0.05, 0.1, q) - frame.zp[1]))
    star_cat[r, j] = m1 < depth_lo[0] + 0.5                      # catalogue depth (SETTING)
    star_mag[r, j] = m1

    # Render, add sky and noise, saturate, take the sky and measure the primary (one compiled pass
    # per exposure). The pipeline's noise estimate is the uncertainty image's (as WISE frames
    # provide); measurements only where a candidate detection exists.
    tables, length = render.lut_tables(np.multiply.outer(WIDTHS, frame.sigma_px))   # table w x C + c
    f_star = F[:, STAR]                 # the bright star's flux (0 where there is none)
    sky_true = inst.gain * sig_pix**2                           # sky-limited: variance = sky / gain
    sat = 10 ** (-0.4 * (np.array(inst.saturation_mag) - frame.zp)) * 0.2
    img = _patch_buffer((M, C, P, P))
    probe = sn.kind_p != EMPTY
    noise_est = _f32(sig_pix)
    star = kernels.BrightStar(_f32(X[:, STAR]), _f32(Y[:, STAR]), _f32(field.SPIKE_FRACTION * f_star), _f32(ring_r),
                              _f32(field.HALO_FRACTION / (2 * np.pi * ring_r[:, None]) * f_star))
    noise = kernels.Noise(rng.integers(0, 2**63, M), noise_est, _f32(sky_true), _f32(sat + sky_true))
    sky, got = kernels.expose(img, probe | (sn.kind_s != EMPTY), probe,
                              kernels.Sources(_f32(X), _f32(Y), _f32(F), W, peak), star, noise,
                              render.psf_setup(tables, length, C, float(np.mean(frame.sigma_px))),
                              cfg.sky_annulus_px)
    mp = dict(zip(("x", "y", "flux", "snr", "chi2"), got))
    mp["x"] = np.where(probe, mp["x"], X[:, PRIMARY])
    mp["y"] = np.where(probe, mp["y"], Y[:, PRIMARY])
    return Exposures(img, sky, mp, X, Y, F, W, star_cat, star_mag, sig_f, noise_est, tables, length)


def _f32(a):
    return np.ascontiguousarray(a, np.float32)


def _place(rng, frame: Frame, sn: Scene, slots, slot, kinds, xs, ys, oid, sig_f, inst):
    """Put each exposure's source of ``kinds`` in ``slot`` of (X, Y, F, W, peak), at patch position
    (xs, ys): amplitudes in units of the band's flux noise for false detections (SETTINGS), a noise
    peak's S/N from the heights of a Gaussian field's peaks above the threshold, the object's flux
    (with its light curve) for objects. Draws only for the exposures holding each kind."""
    X, Y, F, W, peak = slots
    M, C = len(kinds), F.shape[2]
    present = kinds != EMPTY
    X[present, slot], Y[present, slot] = xs[present], ys[present]
    amp = np.zeros((M, C))

    def rows(*names):
        r = np.flatnonzero(np.isin(kinds, [KIND[k] for k in names]))
        return r, len(r)

    r, q = rows("noise")
    amp[r, sn.noise_band[r]] = field.noise_peak_snr(rng, q, inst.detect_snr)
    peak[r, slot] = True
    r, q = rows("cosmic_ray", "hot_pixel")
    amp[r, rng.integers(0, C, q)] = 10 ** rng.uniform(np.log10(3), np.log10(15), q)   # glitch masking takes bright ones
    hot = kinds[r] == KIND["hot_pixel"]
    W[r, slot] = np.where(hot, HOT_PIXEL, COSMIC_RAY)
    X[r[hot], slot] = np.rint(X[r[hot], slot]); Y[r[hot], slot] = np.rint(Y[r[hot], slot])
    r, q = rows("latent")                                    # latents: stronger in the short band (SETTING)
    amp[r] = (inst.detect_snr + rng.exponential(2.5, q))[:, None] * np.array([1.0, 0.4])
    r, q = rows("ghost")                                     # no optical ghosts in W1 (ES)
    amp[r, 1] = inst.detect_snr + rng.exponential(2.5, q)
    W[r, slot] = GHOST
    r, q = rows("star_residual", "diffraction_spike", "halo")
    a_mod = inst.detect_snr + rng.exponential(2.5, q)
    stellar = 10 ** (-0.4 * rng.normal(0.05, 0.1, q))      # ch2/ch1 flux ratio of a star
    amp[r, 0] = a_mod
    amp[r, 1] = a_mod * stellar * (sig_f[r, 0] / sig_f[r, 1]) * 10 ** (0.4 * (frame.zp[1] - frame.zp[0]))
    r, q = rows("other_object")
    a_mod = inst.detect_snr + rng.exponential(2.5, q)
    amp[r, 1] = a_mod
    amp[r, 0] = a_mod * 10 ** rng.uniform(-1.2, 0.0, q)
    flux = np.where(peak[:, slot, None], amp, amp * sig_f)   # a noise peak's "flux" is its S/N (kernels)
    sel = kinds == KIND["object"]
    flux[sel] = sn.obj_flux[sel, np.clip(oid[sel], 0, 1)]
    F[:, slot] = flux


# ------------------------------------------------------------------ 4. the pipeline
def _pipeline(inst: Instrument, cfg: SimConfig, frame: Frame, sv: Survey, sn: Scene, ex: Exposures,
              diagnostics) -> Links:
    """Detection cuts, stationary and artifact rejection; the linker's choice within tolerance of
    its prediction, its longest chain; the truth of each detection; the motion fit."""
    n = sv.avail.shape[0]
    M, C = len(sn.si), 2
    X, Y = ex.X, ex.Y
    half = ex.img.shape[-1] // 2                                  # the patch's centre pixel
    ox, oy = sn.cx - half, sn.cy - half
    mp = ex.mp
    ok_p = _passes(inst, ex, mp, sn.kind_p)
    need = np.flatnonzero(sn.kind_s != EMPTY)
    ms = {"x": X[:, SECONDARY].copy(), "y": Y[:, SECONDARY].copy(), "flux": np.zeros((M, C)),
          "snr": np.zeros((M, C)), "chi2": np.zeros((M, C))}
    if len(need):
        got = render.measure(ex.img, X[need, SECONDARY], Y[need, SECONDARY], frame.sigma_px, ex.sky[need],
                             ex.noise_est[need], rows=need)
        for key in ms:
            ms[key][need] = got[key]
    ok_s = _passes(inst, ex, ms, sn.kind_s)
    # Two measurements closer than a FWHM are one detection (a blend the extractor cannot split).
    fwhm_px = np.mean(inst.fwhm_arcsec) / inst.pixel_scale_arcsec
    ok_s &= ~(ok_p & (np.hypot(mp["x"] - ms["x"], mp["y"] - ms["y"]) < fwhm_px))
    # The linker: of the detections near its prediction it takes the nearest, keeps the longest
    # chain, fits a linear motion and drops detections beyond its tolerance of it (the worst first),
    # then keeps the longest chain of what is left.
    px_, py_ = sn.pred_x - ox, sn.pred_y - oy
    d_p = np.hypot(mp["x"] - px_, mp["y"] - py_)
    d_s = np.hypot(ms["x"] - px_, ms["y"] - py_)
    tol = inst.link_tolerance_px
    link_p = ok_p & (d_p <= SEARCH * tol)
    link_s = ok_s & (d_s <= SEARCH * tol)
    use_s = link_s & (~link_p | (d_s < d_p))
    linked = link_p | link_s
    offsets = np.concatenate([[0], np.cumsum(sn.mask.sum(1))])   # rows of each candidate (si is sorted)
    linker.longest_chain(offsets, linked, inst.max_gap)
    meas = {key: np.where(use_s[:, None] if mp[key].ndim == 2 else use_s, ms[key], mp[key]) for key in mp}
    kind = np.where(use_s, sn.kind_s, sn.kind_p)
    oid = np.where(use_s, sn.oid_s, sn.oid_p)
    oid = np.where(kind == KIND["object"], oid, -1)
    true_x = np.where(use_s, X[:, SECONDARY], X[:, PRIMARY])
    true_y = np.where(use_s, Y[:, SECONDARY], Y[:, PRIMARY])

    # Truth that agrees with the pixels: an observation holds object o if its linked detection is
    # o's, or if the detection's measured position lies within the matching radius of o's true
    # position while o's expected S/N there is at least match_min_snr.
    here_a = sn.kind_p == KIND["object"]
    here_b = sn.oid_s == 1
    snr_a = np.max(ex.F[:, PRIMARY] / ex.sig_f, axis=1)
    snr_b = np.max(ex.F[:, SECONDARY] / ex.sig_f, axis=1)
    r = inst.match_radius_px
    holds_a = here_a & (np.hypot(meas["x"] - X[:, PRIMARY], meas["y"] - Y[:, PRIMARY]) <= r) & (snr_a >= cfg.match_min_snr)
    holds_b = here_b & (np.hypot(meas["x"] - X[:, SECONDARY], meas["y"] - Y[:, SECONDARY]) <= r) & (
        snr_b >= cfg.match_min_snr)
    oid_linked = oid
    oid = np.where(oid >= 0, oid, np.where(holds_a, 0, np.where(holds_b, 1, -1)))
    if diagnostics is not None:
        genuine = ok_p & here_a
        diagnostics.update(scatter_px=np.hypot(mp["x"] - X[:, PRIMARY], mp["y"] - Y[:, PRIMARY])[genuine],
                           scatter_snr=mp["snr"].max(1)[genuine])

    # Linear-motion fit per candidate in the tangent plane (pixels), outliers beyond the tolerance
    # dropped one at a time, the longest chain of the rest, and the final fit.
    gx = meas["x"] + ox                                           # measured tangent-plane position
    gy = meas["y"] + oy
    motion.fit_tracklets(offsets, sn.dtm, gx, gy, linked, tol, MAX_DROPS)
    linker.longest_chain(offsets, linked, inst.max_gap)
    pred_x, pred_y, vx, vy = motion.fit_tracklets(offsets, sn.dtm, gx, gy, linked, tol, 0)
    k = np.bincount(sn.si, weights=linked, minlength=n).astype(np.int64)
    fit_rate = np.hypot(vx, vy) * inst.pixel_scale_arcsec / 3600.0
    rmin, rmax = inst.rate_window_deg_per_day
    keep = (k >= inst.min_links) & (fit_rate >= rmin) & (fit_rate <= rmax)
    return Links(meas, kind, oid, oid_linked, true_x, true_y, linked, here_b, gx, gy, pred_x, pred_y, k, keep)


def _passes(inst: Instrument, ex: Exposures, m: dict, kinds) -> np.ndarray:
    """The pipeline's cuts on measurements ``m`` of sources ``kinds``: S/N and chi-square, and
    stationary rejection (a catalogued star within a FWHM). The artifact flagger's work is done
    where false detections are drawn: only unflagged ones are (``field.field_density``)."""
    M = len(kinds)
    fwhm_px = np.array(inst.fwhm_arcsec).mean() / inst.pixel_scale_arcsec
    snr = m["snr"].max(1)
    chi2 = m["chi2"][np.arange(M), m["snr"].argmax(1)]
    ok = (kinds != EMPTY) & (snr >= inst.detect_snr) & ((chi2 <= inst.chi2_max) | (snr >= inst.chi2_bright_snr))
    r = np.flatnonzero(ok)
    dist = np.hypot(ex.X[r, 2:] - m["x"][r, None], ex.Y[r, 2:] - m["y"][r, None])
    ok[r[np.any(ex.star_cat[r, 2:] & (dist < fwhm_px), axis=1)]] = False
    return ok


# ------------------------------------------------------------------ 5. the QA sheet
def _assemble(inst: Instrument, cfg: SimConfig, frame: Frame, sv: Survey, sn: Scene, ex: Exposures, lk: Links,
              diagnostics) -> SheetBatch:
    """The QA sheets of the accepted candidates: cutouts recentred on the fitted motion, the
    composite, scalars measured from pixels, astrometry, and the truth kept apart."""
    n = sv.avail.shape[0]
    scale = inst.pixel_scale_arcsec
    half = ex.img.shape[-1] // 2                                  # the patch's centre pixel
    si, ei, cx, cy = sn.si, sn.ei, sn.cx, sn.cy
    X, Y, meas, keep = ex.X, ex.Y, lk.meas, lk.keep
    fi = np.flatnonzero(lk.linked & keep[si])                     # rows of the flat exposure list
    osi = si[fi]
    pred_x, pred_y = lk.pred_x[fi], lk.pred_y[fi]
    ox = np.clip(np.rint(pred_x - cx[fi]), -cfg.margin_px, cfg.margin_px).astype(np.int64)
    oy = np.clip(np.rint(pred_y - cy[fi]), -cfg.margin_px, cfg.margin_px).astype(np.int64)
    r0 = half + oy - S // 2
    c0 = half + ox - S // 2
    cut = kernels.cutouts(ex.img, fi, r0, c0, S)
    ccx = cx[fi] + ox                                            # cutout centre in the tangent plane
    ccy = cy[fi] + oy

    keep_idx = np.flatnonzero(keep)
    remap = np.full(n, -1)
    remap[keep_idx] = np.arange(len(keep_idx))
    sheet_of = remap[osi]
    N = len(keep_idx)
    kk = lk.k[keep_idx]

    snr = meas["snr"][fi]
    flux = meas["flux"][fi]
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(flux > 0, frame.zp[None, :] - 2.5 * np.log10(np.where(flux > 0, flux, 1)), np.nan)
        magerr = np.where(flux > 0, 1.0857 / np.abs(snr), np.nan)
    band = snr.argmax(1)
    chi2 = meas["chi2"][fi, band]
    sdist = np.hypot(X[fi, 2:] - meas["x"][fi, None], Y[fi, 2:] - meas["y"][fi, None])
    sdist = np.where(ex.star_cat[fi, 2:], sdist, np.inf)     # the pipeline knows catalogued stars only
    nearest = np.argmin(sdist, axis=1)
    dmin = sdist[np.arange(len(fi)), nearest]
    has_star = np.isfinite(dmin)
    star_dist = np.where(has_star, dmin * scale, np.nan)
    smag = np.where(has_star, ex.star_mag[fi, 2:][np.arange(len(fi)), nearest], np.nan)
    near_flag = near_star_flag(star_dist, inst.fwhm_arcsec)
    t_obs = sv.times[osi, ei[fi]]

    # Astrometry of each detection, from its measured position; the motion and where the sheet lies
    # measured from them as ingest measures a team's sheets (data.motion): a line fitted to every
    # sheet's positions over time in the tangent plane at its mean direction.
    det_eq = geo.deproject(lk.gx[fi], lk.gy[fi], sv.centre_eq[osi], scale)
    lon, lat = geo.unit_to_lonlat(det_eq)
    obs_geo, sheet_geo = motion.geometry_scalars(t_obs, lon, lat, kk)
    obs_scalars = np.stack([
        obs_geo["dt_hr"], obs_geo["fit_offset_arcsec"], snr[:, 0], snr[:, 1], mag[:, 0], mag[:, 1],
        magerr[:, 0], magerr[:, 1], chi2, ex.sky[fi, 0], ex.sky[fi, 1], near_flag, star_dist, smag,
    ], axis=1).astype(np.float32)
    assert obs_scalars.shape[1] == len(OBS_SCALARS)
    # Each cutout's WCS: the candidate's tangent plane (x west, y north at its tangent point), its
    # centre pixel at (ccx, ccy) there; FITS pixels are 1-based.
    wcs = np.zeros((len(fi), len(WCS_FIELDS)))
    wcs[:, 0], wcs[:, 1] = geo.unit_to_lonlat(sv.centre_eq[osi])
    wcs[:, 2], wcs[:, 3] = S // 2 + 1 - ccx, S // 2 + 1 - ccy
    wcs[:, 4], wcs[:, 7] = -scale / 3600.0, scale / 3600.0

    # Composite: background-subtracted cutouts averaged in the moving frame.
    comp = composite(cut, ex.sky[fi], kk)
    comp_snr = composite_snr(comp, frame.sigma_px, composite_noise(ex.noise_est[fi], kk))

    # Sheet scalars: summaries of the observations (as corrupt.refresh recomputes them),
    # the motion fit, the composite and where the sheet lies on the sky.
    sheet = summarise(dict(zip(OBS_SCALARS, obs_scalars.T)), kk, inst.detect_snr)
    sheet.update(sheet_geo)
    sheet.update({"composite_snr_ch1": comp_snr[:, 0], "composite_snr_ch2": comp_snr[:, 1]})
    sheet_scalars = np.stack([sheet[name] for name in SHEET_SCALARS], axis=1).astype(np.float32)
    assert sheet_scalars.shape[1] == len(SHEET_SCALARS)

    # Truth, and the label rule applied to it.
    ooid = lk.oid[fi]
    n_obj = _object_count(ooid, sheet_of, N)
    clean = (n_obj >= LABEL_MIN_OBS).astype(np.int8)
    if diagnostics is not None:
        diagnostics["clean_label_linked_only"] = (_object_count(lk.oid_linked[fi], sheet_of, N) >= LABEL_MIN_OBS
                                                  ).astype(np.int8)
    ks = keep_idx
    objA, has_obj = sn.objA, sn.has_obj
    first, last = _span(sn.mask)
    span_days = np.maximum(sv.times[np.arange(n), last] - sv.times[np.arange(n), first], 1e-6)[ks]
    true_rate = np.where(has_obj[ks], np.hypot(_endpoint(sn.ax, sn.mask)[ks], _endpoint(sn.ay, sn.mask)[ks])
                         / span_days * scale / 3600.0, np.nan)
    truth_sheet = {
        "clean_label": clean, "scenario": sn.scenario[ks].astype(np.int8),
        "object_class": np.where(has_obj[ks], objA["cls"][ks], 0).astype(np.int8),
        "n_object_obs": n_obj.astype(np.int16),
        "diameter_km": _if(has_obj[ks], objA["diameter"][ks]), "albedo": _if(has_obj[ks], objA["pv"][ks]),
        "beaming": _if(has_obj[ks], objA["beaming"][ks]), "r_au": _if(has_obj[ks], objA["r"][ks]),
        "delta_au": _if(has_obj[ks], objA["delta"][ks]), "phase_deg": _if(has_obj[ks], objA["phase"][ks]),
        "true_rate_deg_per_day": true_rate.astype(np.float32), "true_snr": _if(has_obj[ks], objA["snr"][ks]),
    }
    # Where each object truly is in every cutout (NaN where it is not in the exposure), and the
    # observatory at each exposure (for checks and for reports from a space-based site).
    centre_x, centre_y = ccx - cx[fi] + half, ccy - cy[fi] + half                  # patch coordinates
    at = {0: sn.kind_p[fi] == KIND["object"], 1: lk.here_b[fi]}
    slot = {0: PRIMARY, 1: SECONDARY}
    observer = _observer(inst, t_obs, sv.phase0[osi])
    truth_obs = {"source_kind": lk.kind[fi].astype(np.int8), "object_id": ooid.astype(np.int16),
                 "true_x_px": (lk.true_x[fi] - centre_x).astype(np.float32),
                 "true_y_px": (lk.true_y[fi] - centre_y).astype(np.float32),
                 "object_x_px": _if(at[0], X[fi, slot[0]] - centre_x), "object_y_px": _if(at[0], Y[fi, slot[0]] - centre_y),
                 "object2_x_px": _if(at[1], X[fi, slot[1]] - centre_x),
                 "object2_y_px": _if(at[1], Y[fi, slot[1]] - centre_y),
                 "observer_x_au": observer[:, 0], "observer_y_au": observer[:, 1], "observer_z_au": observer[:, 2]}
    return SheetBatch(
        sheet_id=np.array([""] * N, dtype=object), label=clean.copy(), k=kk.astype(np.int32),
        composite=comp, sheet_scalars=sheet_scalars, cutouts=cut,
        obs_scalars=obs_scalars, ra=lon, dec=lat, mjd=t_obs, band=band.astype(np.int8),
        mag=mag[np.arange(len(fi)), band].astype(np.float32), wcs=wcs,
        truth_sheet=truth_sheet, truth_obs=truth_obs,
    )


_PATCHES = [np.empty(0, np.float32)]


def _patch_buffer(shape):
    """One patch buffer per process, grown as needed and reused batch after batch.

    The patches (~80 MB for 2,048 candidates) never leave ``simulate_candidates``: cutouts are
    copied out. Reuse spares the page faults of a fresh allocation, which cost more
    than rendering and noise together.
    """
    size = int(np.prod(shape))
    if _PATCHES[0].size < size:
        _PATCHES[0] = np.empty(size + size // 4, np.float32)
    return _PATCHES[0][:size].reshape(shape)


def _object_count(oid, sheet_of, n) -> np.ndarray:
    """Per sheet, the most observations that hold one object (the label rule's count)."""
    count = np.zeros((n, 2), np.int64)
    for o in (0, 1):
        np.add.at(count[:, o], sheet_of, (oid == o).astype(np.int64))
    return count.max(1)


def _if(cond, values):
    return np.where(cond, values, np.nan).astype(np.float32)


def _span(mask):
    """First and last exposure of each row (0 where a row has none)."""
    first = np.argmax(mask, axis=1)
    last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    return first, last


def _endpoint(a, mask):
    """Displacement between the first and last exposure, per row."""
    first, last = _span(mask)
    rows = np.arange(a.shape[0])
    return a[rows, last] - a[rows, first]
