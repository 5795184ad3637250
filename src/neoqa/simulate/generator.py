"""One batch of simulated QA sheets, from sky geometry to measured scalars.

The flow for a batch of candidates (all steps vectorised over sheets or exposures):
  1. survey geometry: time, pointing, the exposures that cover it, the observer's place;
  2. what sits at each exposure: the moving object(s) propagated along their orbits,
     or the false detections of each kind that a linker can string together;
  3. rendering of a patch per exposure (PSF, stars, artifacts, sky, noise);
  4. the pipeline: measure each candidate detection, apply the detection cuts,
     stationary and artifact rejection, link along a linear motion, fit it;
  5. the QA sheet: cutouts recentred on the fitted motion, the composite, scalars
     measured from pixels, and the truth kept apart.
The label is the rule applied to truth, never an input: a sheet is real iff at
least ``LABEL_MIN_OBS`` (5) observations hold the same moving object.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..schema import CUTOUT_SIZE, LABEL_MIN_OBS, OBS_SCALARS, SCENARIOS, SHEET_SCALARS, SOURCE_CODE
from ..sheets import SheetBatch, composite
from ..summaries import summarise
from . import geometry as geo
from . import kernels, orbits, population, render
from .config import SimConfig
from .instruments import Instrument

S = CUTOUT_SIZE
KIND = SOURCE_CODE
EMPTY = -1
SC = {name: i for i, name in enumerate(SCENARIOS)}
MAX_EPOCHS = 50
# Source widths in units of the band's PSF sigma: a point source, a hot pixel, a cosmic
# ray (both sharper than the PSF) and a ghost (broader).
WIDTHS = np.array([1.0, 0.12, 0.3, 1.6])
POINT, HOT_PIXEL, COSMIC_RAY, GHOST = range(4)


class Frame:
    """Per-band photometric constants of an instrument (DN units)."""

    def __init__(self, inst: Instrument):
        self.inst = inst
        self.sigma_px = np.array(inst.fwhm_arcsec) / inst.pixel_scale_arcsec * render.FWHM_TO_SIGMA
        self.sum_sq = np.array([render.psf_sum_sq(s) for s in self.sigma_px])
        self.zp = np.array(inst.magzp)

    def jy_to_dn(self, flux_jy):
        return flux_jy / np.array(self.inst.zero_point_jy) * 10 ** (0.4 * self.zp)

    def flux_noise_dn(self, depth_mag):
        """PSF-fit flux error (DN) for a 5-sigma depth (mag)."""
        return 10 ** (-0.4 * (depth_mag - self.zp)) / 5.0

    def pixel_noise(self, depth_mag):
        return self.flux_noise_dn(depth_mag) * np.sqrt(self.sum_sq)


def _choice(rng, weights: dict, n, names=None):
    keys = list(weights)
    p = np.array([weights[k] for k in keys], dtype=float)
    idx = rng.choice(len(keys), size=n, p=p / p.sum())
    lookup = np.array([(names or KIND)[k] for k in keys])
    return lookup[idx]


def _disk(rng, n, radius):
    r = radius * np.sqrt(rng.random(n))
    a = rng.uniform(0, 2 * np.pi, n)
    return r * np.cos(a), r * np.sin(a)


# ------------------------------------------------------------------ helpers of steps 1 and 2
def _survey_geometry(rng, inst: Instrument, n):
    t0 = rng.uniform(*inst.mjd_range, n)
    earth = geo.earth_position(t0)
    sun_dir = -earth / np.linalg.norm(earth, axis=-1, keepdims=True)
    sun_lon = np.rad2deg(np.arctan2(sun_dir[:, 1], sun_dir[:, 0]))
    side = np.where(rng.random(n) < 0.5, 1.0, -1.0)          # leading or trailing
    # Candidates concentrate toward the ecliptic, where the asteroids are (SETTING).
    near = rng.random(n) < 0.7
    if inst.cadence == "wise":
        lat = np.where(near, rng.uniform(-30, 30, n), np.rad2deg(np.arcsin(rng.uniform(-1, 1, n))))
        lon = sun_lon + side * 90.0                            # WISE scans at 90 deg elongation (EW)
        # The scan circle sweeps ~1 deg/day; a point at latitude b stays in the 47'
        # field for ~12/cos(b) orbits (ES-Prelim I.4.d; EW).
        n_ep = np.rint(12.0 / np.maximum(np.cos(np.deg2rad(lat)), 0.2) * rng.uniform(0.75, 1.1, n))
        n_ep = np.clip(n_ep, 6, MAX_EPOCHS).astype(np.int64)
        j = np.arange(MAX_EPOCHS)
        times = t0[:, None] + j[None, :] * geo.WISE_ORBIT_PERIOD_DAY + rng.normal(0, 2e-4, (n, MAX_EPOCHS))
        mask = (j[None, :] < n_ep[:, None]) & (rng.random((n, MAX_EPOCHS)) > 0.05)
    else:
        lat = np.where(near, rng.uniform(-25, 25, n), rng.uniform(-40, 40, n))     # +-40 deg (B21)
        lon = sun_lon + side * rng.uniform(45, 120, n)                               # 45-120 deg (B21)
        # Four visits of six ~30 s exposures across ~8 h (B21): 24 exposures at most.
        visit = np.arange(24) // 6
        expo = np.arange(24) % 6
        visit_t = np.arange(4)[None, :] * (2.0 / 24) + rng.normal(0, 10 / 1440, (n, 4))
        times = t0[:, None] + visit_t[:, visit] + expo[None, :] * (42.0 / 86400)
        times = np.concatenate([times, np.zeros((n, MAX_EPOCHS - 24))], axis=1)
        mask = np.zeros((n, MAX_EPOCHS), bool)
        mask[:, :24] = rng.random((n, 24)) > 0.1               # chip gaps (SETTING)
    pointing_ecl = geo.lonlat_to_unit(lon, lat)
    # Sheets need at least min_links exposures; shift the first exposures on if too few survive.
    few = mask.sum(1) < inst.min_links
    mask[few, : inst.min_links] = True
    return t0, times, mask, pointing_ecl


def _observer(inst, times, phase0):
    """The observatory at ``times``; phase0 (WISE's orbital phase) has the same shape."""
    return geo.observer_position(inst.observer, times, phase0 if inst.observer == "wise" else 0.0)


def _objects(rng, inst, cfg, frame, rows, n, pointing_ecl, obs_mid):
    """Objects on the sight lines of sheets ``rows`` (``population.draw_objects``), as [n] arrays.

    Rows not asked for, and rows where no detectable member of the population lies on the sight
    line, have ok False and a placeholder orbit that is never rendered.
    """
    m = len(rows)
    cls = np.where(rng.random(m) < cfg.neo_fraction, population.NEO, population.MBA)
    got = population.draw_objects(rng, inst, frame, cls, obs_mid[rows], pointing_ecl[rows], cfg.min_object_snr)
    pos, ok = got["pos"], got["ok"]
    r = np.linalg.norm(pos, axis=-1)
    o2o = obs_mid[rows] - pos
    phase = np.rad2deg(np.arccos(np.clip(np.sum(-pos * o2o, -1) / (r * np.linalg.norm(o2o, axis=-1)), -1, 1)))
    part = {"cls": np.where(ok, cls, 0), "pos": pos, "vel": got["vel"], "ok": ok,
            "flux_dn": frame.jy_to_dn(got["flux1_jy"]) * np.nan_to_num(got["diameter"])[:, None] ** 2,
            "diameter": got["diameter"], "pv": got["pv"], "beaming": got["beaming"], "r": r,
            "delta": got["delta"], "phase": phase, "snr": got["snr"]}
    full = {"cls": np.zeros(n, np.int64), "ok": np.zeros(n, bool), "pos": np.tile([2.5, 0.0, 0.0], (n, 1)),
            "vel": np.tile([0.0, np.sqrt(orbits.GM_SUN / 2.5), 0.0], (n, 1)), "delta": np.full(n, 1.5),
            "flux_dn": np.zeros((n, 2))}
    for key, value in part.items():
        if key not in full:
            full[key] = np.full(n, np.nan)
        full[key][rows] = value
    return full


def _sky_track(obj, si, ei, times, t_mid, obs):
    """Apparent ecliptic directions [q, 3] of each object at exposures (si, ei), seen from
    ``obs`` [q, 3], light-time corrected."""
    pos, vel = obj["pos"][si], obj["vel"][si]
    dt = times[si, ei] - t_mid[si]
    p = orbits.propagate(pos, vel, dt)
    lt = np.linalg.norm(p - obs, axis=-1) / geo.C_AU_PER_DAY
    v = orbits.propagate(pos, vel, dt - lt) - obs
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


# ------------------------------------------------------------------ the steps' products
@dataclass
class Survey:
    """Step 1: each candidate's exposures [n, MAX_EPOCHS] (``mask`` says which exist), its
    pointing, its mid-time and the observatory there (``phase0``: WISE's orbital phase)."""
    times: np.ndarray
    mask: np.ndarray
    pointing_ecl: np.ndarray
    t_first: np.ndarray
    t_last: np.ndarray
    t_mid: np.ndarray
    phase0: np.ndarray
    obs_mid: np.ndarray


@dataclass
class Scene:
    """Step 2: what sits at each exposure, flat over the valid exposures (si, ei).

    The primary source (``kind_p``, at ``anc``; the object where there is one, ``oid_p`` 0 or 1
    for objects A and B) and the secondary the linker may pad with (``kind_s``, at ``sec``), in the
    tangent plane (pixels) about ``centre_eq``; ``ax, ay`` [n, E] is object A's track."""
    scenario: np.ndarray
    has_obj: np.ndarray
    objA: dict
    objB: dict
    centre_eq: np.ndarray
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
    sec_x: np.ndarray
    sec_y: np.ndarray
    cx: np.ndarray
    cy: np.ndarray


@dataclass
class Exposures:
    """Step 3: the rendered patches and the primary's measurement. Sources are slots
    [primary, secondary, bright star, field stars...] in patch pixels (X, Y [M, NS]; F [M, NS, C];
    W the profile width index); the secondary is rendered only where the pipeline needs it."""
    img: np.ndarray
    sky: np.ndarray
    mp: dict
    X: np.ndarray
    Y: np.ndarray
    F: np.ndarray
    W: np.ndarray
    F_sec: np.ndarray
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
    here: np.ndarray
    gx: np.ndarray
    gy: np.ndarray
    pred_x: np.ndarray
    pred_y: np.ndarray
    vx: np.ndarray
    vy: np.ndarray
    k: np.ndarray
    fit_rate: np.ndarray
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
    links = _pipeline(rng, inst, cfg, frame, survey, scene, exposures, diagnostics)
    if not links.keep.any():
        return None
    return _assemble(inst, cfg, frame, survey, scene, exposures, links, diagnostics)


# ------------------------------------------------------------------ 1. geometry
def _geometry(rng, inst: Instrument, n: int) -> Survey:
    """Exposures and pointing (``_survey_geometry``), the mid-time and the observatory there."""
    _, times, mask, pointing_ecl = _survey_geometry(rng, inst, n)
    first = np.argmax(mask, axis=1)
    t_first = times[np.arange(n), first]
    t_last = np.max(np.where(mask, times, -np.inf), axis=1)
    t_mid = 0.5 * (t_first + t_last)
    phase0 = rng.uniform(0, 2 * np.pi, n)
    return Survey(times, mask, pointing_ecl, t_first, t_last, t_mid, phase0, _observer(inst, t_mid, phase0))


# ------------------------------------------------------------------ 2. the scene
def _scene(rng, inst: Instrument, cfg: SimConfig, frame: Frame, sv: Survey) -> Scene:
    """The scenario of each candidate, its objects and their tracks, or the false hypothesis a
    linker strings false detections along, and what sits at each exposure."""
    n, E = sv.mask.shape
    scale = inst.pixel_scale_arcsec
    scenario = _choice(rng, cfg.scenario_weights, n, SC)
    # Objects: A for 'object' and 'two_objects', B for 'two_objects'.
    has_obj = np.isin(scenario, [SC["object"], SC["two_objects"]])
    objA = _objects(rng, inst, cfg, frame, np.flatnonzero(has_obj), n, sv.pointing_ecl, sv.obs_mid)
    objB = _objects(rng, inst, cfg, frame, np.flatnonzero(scenario == SC["two_objects"]), n, sv.pointing_ecl,
                    sv.obs_mid)
    scenario = np.where(has_obj & ~objA["ok"], SC["chance"], scenario)   # no object on this sight line
    scenario = np.where((scenario == SC["two_objects"]) & ~objB["ok"], SC["object"], scenario)
    has_obj = np.isin(scenario, [SC["object"], SC["two_objects"]])

    # Tangent-plane reference: object A at mid-time, else the pointing.
    centre_eq = geo.ecliptic_to_equatorial(sv.pointing_ecl)
    mid_dir = geo.ecliptic_to_equatorial(objA["pos"] - sv.obs_mid)
    mid_dir /= np.linalg.norm(mid_dir, axis=-1, keepdims=True)
    centre_eq = np.where(has_obj[:, None], mid_dir, centre_eq)
    ax = np.zeros((n, E)); ay = np.zeros((n, E))                  # object A's track in pixels
    oi, oe = np.nonzero(sv.mask & has_obj[:, None])
    seen_from = _observer(inst, sv.times[oi, oe], sv.phase0[oi])
    dirA = geo.ecliptic_to_equatorial(_sky_track(objA, oi, oe, sv.times, sv.t_mid, seen_from))
    tx, ty = geo.project(dirA[:, None, :], centre_eq[oi], scale)
    ax[oi, oe], ay[oi, oe] = tx[:, 0], ty[:, 0]

    # False hypotheses: linear motion, uniform in the 2-D velocity disk of the rate window.
    rmin, rmax = inst.rate_window_deg_per_day
    rate = np.sqrt(rng.uniform(rmin**2, rmax**2, n)) * 3600.0 / scale       # px/day
    pa = rng.uniform(0, 2 * np.pi, n)
    dt = sv.times - sv.t_mid[:, None]
    hx = -np.sin(pa)[:, None] * rate[:, None] * dt
    hy = np.cos(pa)[:, None] * rate[:, None] * dt
    path_x = np.where(has_obj[:, None], ax, hx)
    path_y = np.where(has_obj[:, None], ay, hy)

    # Second object: another asteroid whose positions fall near A's track at its epochs.
    split = rng.integers(2, np.maximum(3, sv.mask.sum(1) - 1))
    order = np.cumsum(sv.mask, axis=1) - 1
    isB = (scenario == SC["two_objects"])[:, None] & (order >= split[:, None])
    tol = inst.link_tolerance_px
    bx0, by0 = _disk(rng, n, 0.7 * tol)
    bdv = rng.normal(0, 0.5, (2, n))                              # px/day relative drift

    # What sits at each exposure (flat list over valid exposures).
    si, ei = np.nonzero(sv.mask)
    M = len(si)
    sc = scenario[si]
    kind_p = np.full(M, EMPTY)
    oid_p = np.full(M, -1)
    is_obj = np.isin(sc, [SC["object"], SC["two_objects"]])
    kind_p[is_obj] = KIND["object"]
    oid_p[is_obj] = np.where(isB[si, ei][is_obj], 1, 0)
    chance = sc == SC["chance"]
    kind_p[chance] = np.where(rng.random(chance.sum()) < 0.85, _choice(rng, cfg.false_kinds, chance.sum()), EMPTY)
    art = sc == SC["artifact"]
    kind_p[art] = np.where(rng.random(art.sum()) < 0.55, _choice(rng, cfg.artifact_kinds, art.sum()),
                           _choice(rng, cfg.false_kinds, art.sum()))
    jx, jy = _disk(rng, M, tol)
    px_ = path_x[si, ei]
    py_ = path_y[si, ei]
    dtm = dt[si, ei]
    anc_x = np.where(is_obj, px_, px_ + jx)
    anc_y = np.where(is_obj, py_, py_ + jy)
    b = oid_p == 1
    anc_x[b] = px_[b] + bx0[si[b]] + bdv[0, si[b]] * dtm[b]
    anc_y[b] = py_[b] + by0[si[b]] + bdv[1, si[b]] * dtm[b]
    fill = rng.random(M) < cfg.fill_probability
    kind_s = np.where(fill, _choice(rng, cfg.false_kinds, M), EMPTY)
    sx, sy = _disk(rng, M, tol)
    return Scene(scenario, has_obj, objA, objB, centre_eq, ax, ay, si, ei, dtm, kind_p, oid_p, anc_x, anc_y,
                 kind_s, px_ + sx, py_ + sy, np.rint(anc_x), np.rint(anc_y))   # patch centre: the primary


# ------------------------------------------------------------------ 3. rendering
def _render(rng, inst: Instrument, cfg: SimConfig, frame: Frame, sv: Survey, sn: Scene) -> Exposures:
    """Every exposure's patch (sources, the bright star's features, field stars, sky, noise,
    saturation), its sky level, and the primary measured from it (one compiled pass)."""
    n = sv.mask.shape[0]
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
    NS = 3 + NF
    X = np.zeros((M, NS)); Y = np.zeros((M, NS))
    F = np.zeros((M, NS, C)); W = np.zeros((M, NS), np.int64)      # index into WIDTHS
    star_cat = np.zeros((M, NS), bool)                           # catalogued stars (for rejection)
    star_mag = np.full((M, NS), np.nan)
    slots = (X, Y, F, W)
    _place(rng, cfg, frame, sv, sn, slots, 0, sn.kind_p, sn.anc_x - sn.cx + half, sn.anc_y - sn.cy + half,
           sn.oid_p, sig_f)
    _place(rng, cfg, frame, sv, sn, slots, 1, sn.kind_s, sn.sec_x - sn.cx + half, sn.sec_y - sn.cy + half,
           np.full(M, -1), sig_f)

    # Bright star for spikes and halos, placed so the primary detection lies on the feature.
    spike = sn.kind_p == KIND["diffraction_spike"]
    bi = np.flatnonzero(spike | (sn.kind_p == KIND["halo"]))
    q = len(bi)
    d = np.full(M, 5.0)                 # star-to-detection distance (a placeholder where no star)
    d[bi] = rng.uniform(3.0, 7.0, q)
    ang = np.where(spike[bi], rng.integers(0, 4, q) * (np.pi / 2), rng.uniform(0, 2 * np.pi, q))
    X[:, 2:] = -100.0                   # stars off the patch unless placed
    Y[:, 2:] = -100.0
    X[bi, 2] = X[bi, 0] + d[bi] * np.cos(ang)
    Y[bi, 2] = Y[bi, 0] + d[bi] * np.sin(ang)
    bmag = rng.uniform(5.5, 9.5, q)
    F[bi, 2, 0] = 10 ** (-0.4 * (bmag - frame.zp[0]))
    F[bi, 2, 1] = 10 ** (-0.4 * (bmag - rng.normal(0.05, 0.1, q) - frame.zp[1]))
    star_cat[bi, 2] = True
    star_mag[bi, 2] = bmag

    # Field stars: density by galactic latitude, magnitudes from the counts slope.
    blat = geo.galactic_latitude(sn.centre_eq)[si]
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
    F_sec = F[:, 1].copy()              # rendered later, only where the primary is missed
    F[:, 1] = 0.0
    f_star = F[:, 2]                    # the bright star's flux (0 where there is none)
    sky_true = inst.gain * sig_pix**2                           # sky-limited: variance = sky / gain
    sat = 10 ** (-0.4 * (np.array(inst.saturation_mag) - frame.zp)) * 0.2
    img = _patch_buffer((M, C, P, P))
    probe = sn.kind_p != EMPTY
    noise_est = _f32(sig_pix)
    star = kernels.BrightStar(_f32(X[:, 2]), _f32(Y[:, 2]), _f32(2e-3 * f_star), _f32(d),
                              _f32(5e-3 / (2 * np.pi * d[:, None]) * f_star))
    noise = kernels.Noise(rng.integers(0, 2**63, M), noise_est, _f32(sky_true), _f32(sat + sky_true))
    sky, got = kernels.expose(img, probe | (sn.kind_s != EMPTY), probe,
                              kernels.Sources(_f32(X), _f32(Y), _f32(F), W), star, noise,
                              render.psf_setup(tables, length, C, float(np.mean(frame.sigma_px))))
    mp = dict(zip(("x", "y", "flux", "snr", "chi2"), got))
    mp["x"] = np.where(probe, mp["x"], X[:, 0])
    mp["y"] = np.where(probe, mp["y"], Y[:, 0])
    return Exposures(img, sky, mp, X, Y, F, W, F_sec, star_cat, star_mag, sig_f, noise_est, tables, length)


def _f32(a):
    return np.ascontiguousarray(a, np.float32)


def _place(rng, cfg: SimConfig, frame: Frame, sv: Survey, sn: Scene, slots, slot, kinds, xs, ys, oid, sig_f):
    """Put each exposure's source of ``kinds`` in ``slot`` of (X, Y, F, W), at patch position
    (xs, ys): amplitudes in units of the band's flux noise for false detections, the object's
    flux (with its light curve) for objects. Draws only for the exposures holding each kind."""
    X, Y, F, W = slots
    M, C = len(kinds), F.shape[2]
    X[:, slot], Y[:, slot] = xs, ys
    amp = np.zeros((M, C))

    def rows(*names):
        r = np.flatnonzero(np.isin(kinds, [KIND[k] for k in names]))
        return r, len(r)

    r, q = rows("noise")
    amp[r, rng.integers(0, C, q)] = 3.6 + rng.exponential(0.9, q)
    r, q = rows("cosmic_ray", "hot_pixel")
    amp[r, rng.integers(0, C, q)] = 10 ** rng.uniform(np.log10(5), np.log10(150), q)
    hot = kinds[r] == KIND["hot_pixel"]
    W[r, slot] = np.where(hot, HOT_PIXEL, COSMIC_RAY)
    X[r[hot], slot] = np.rint(X[r[hot], slot]); Y[r[hot], slot] = np.rint(Y[r[hot], slot])
    r, q = rows("latent")                                    # latents: stronger in the short band (SETTING)
    amp[r] = (4.0 + rng.exponential(2.5, q))[:, None] * np.array([1.0, 0.4])
    r, q = rows("ghost")                                     # no optical ghosts in W1 (ES)
    amp[r, 1] = 4.0 + rng.exponential(2.5, q)
    W[r, slot] = GHOST
    r, q = rows("star_residual", "diffraction_spike", "halo")
    a_mod = 4.0 + rng.exponential(2.5, q)
    stellar = 10 ** (-0.4 * rng.normal(0.05, 0.1, q))      # ch2/ch1 flux ratio of a star
    amp[r, 0] = a_mod
    amp[r, 1] = a_mod * stellar * (sig_f[r, 0] / sig_f[r, 1]) * 10 ** (0.4 * (frame.zp[1] - frame.zp[0]))
    r, q = rows("other_object")
    a_mod = 4.0 + rng.exponential(2.5, q)
    amp[r, 1] = a_mod
    amp[r, 0] = a_mod * 10 ** rng.uniform(-1.2, 0.0, q)
    flux = amp * sig_f
    sel = kinds == KIND["object"]
    if sel.any():
        n, si = sv.mask.shape[0], sn.si
        lc_amp = rng.uniform(*cfg.lightcurve_amp_mag, n)[si]
        lc_per = rng.uniform(3, 12, n)[si] / 24
        lc_ph = rng.uniform(0, 2 * np.pi, n)[si]
        lc = 10 ** (-0.2 * lc_amp * np.sin(2 * np.pi * sv.times[si, sn.ei] / lc_per + lc_ph))
        fa = sn.objA["flux_dn"][si] * lc[:, None]
        fb = sn.objB["flux_dn"][si] * lc[:, None]
        flux[sel] = np.where((oid == 1)[sel, None], fb[sel], fa[sel])
    F[:, slot] = flux


# ------------------------------------------------------------------ 4. the pipeline
def _pipeline(rng, inst: Instrument, cfg: SimConfig, frame: Frame, sv: Survey, sn: Scene, ex: Exposures,
              diagnostics) -> Links:
    """Detection cuts, stationary and artifact rejection; the secondary where the primary is
    missed; the truth of each detection; the link and its motion fit."""
    n = sv.mask.shape[0]
    M, C = len(sn.si), 2
    X, Y = ex.X, ex.Y
    half = ex.img.shape[-1] // 2                                  # the patch's centre pixel
    mp = ex.mp
    ok_p = _passes(rng, inst, cfg, ex, mp, sn.kind_p)
    # A linker pads only the exposures where the primary was missed: a chance detection
    # within tolerance is there with probability fill_probability.
    kind_s = np.where(ok_p, EMPTY, sn.kind_s)
    need = np.flatnonzero(kind_s != EMPTY)
    ms = {"x": X[:, 1].copy(), "y": Y[:, 1].copy(), "flux": np.zeros((M, C)), "snr": np.zeros((M, C)),
          "chi2": np.zeros((M, C))}
    if len(need):
        kernels.add_points(ex.img, need, _f32(X[need, 1:2]), _f32(Y[need, 1:2]), _f32(ex.F_sec[need, None, :]),
                           ex.W[need, 1:2, None] * C + np.arange(C), ex.tables, ex.length)
        got = render.measure(ex.img, X[need, 1], Y[need, 1], frame.sigma_px, ex.sky[need], ex.noise_est[need],
                             rows=need)
        for key in ms:
            ms[key][need] = got[key]
    ok_s = _passes(rng, inst, cfg, ex, ms, kind_s)
    use_s = ~ok_p & ok_s
    linked = ok_p | ok_s
    meas = {key: np.where(use_s[:, None] if mp[key].ndim == 2 else use_s, ms[key], mp[key]) for key in mp}
    kind = np.where(use_s, kind_s, sn.kind_p)
    oid = np.where(use_s, -1, sn.oid_p)
    oid = np.where(kind == KIND["object"], oid, -1)
    true_x = np.where(use_s, X[:, 1], X[:, 0])
    true_y = np.where(use_s, Y[:, 1], Y[:, 0])

    # Truth that agrees with the pixels: an observation holds object o if its linked detection is
    # o's, or if the detection's measured position lies within the matching radius of o's true
    # position while o's expected S/N there is at least match_min_snr (the linker may have linked
    # a chance detection, but the object is in it). Slot 0 holds the object where there is one.
    here = sn.kind_p == KIND["object"]
    exp_snr = np.max(ex.F[:, 0] / ex.sig_f, axis=1)
    miss = np.hypot(meas["x"] - X[:, 0], meas["y"] - Y[:, 0])
    holds = use_s & here & (miss <= inst.match_radius_px) & (exp_snr >= cfg.match_min_snr)
    oid_linked = oid
    oid = np.where(holds, sn.oid_p, oid)
    if diagnostics is not None:
        genuine = ok_p & here
        diagnostics.update(scatter_px=np.hypot(mp["x"] - X[:, 0], mp["y"] - Y[:, 0])[genuine],
                           scatter_snr=mp["snr"].max(1)[genuine])

    # Linear-motion fit per candidate in the tangent plane (pixels), up to two outliers dropped.
    gx = meas["x"] + sn.cx - half                                 # measured tangent-plane position
    gy = meas["y"] + sn.cy - half
    offsets = np.concatenate([[0], np.cumsum(sv.mask.sum(1))])    # rows of each candidate (si is sorted)
    pred_x, pred_y, vx, vy = kernels.fit_tracklets(offsets, sn.dtm, gx, gy, linked, 2.5 * inst.link_tolerance_px, 2)
    k = np.bincount(sn.si, weights=linked, minlength=n).astype(np.int64)
    fit_rate = np.hypot(vx, vy) * inst.pixel_scale_arcsec / 3600.0
    rmin, rmax = inst.rate_window_deg_per_day
    keep = (k >= inst.min_links) & (fit_rate >= rmin) & (fit_rate <= rmax)
    return Links(meas, kind, oid, oid_linked, true_x, true_y, linked, here, gx, gy, pred_x, pred_y, vx, vy, k,
                 fit_rate, keep)


def _passes(rng, inst: Instrument, cfg: SimConfig, ex: Exposures, m: dict, kinds) -> np.ndarray:
    """The pipeline's cuts on measurements ``m`` of sources ``kinds``: S/N and chi-square,
    stationary rejection (a catalogued star within a FWHM), the artifact flagger."""
    M = len(kinds)
    fwhm_px = np.array(inst.fwhm_arcsec).mean() / inst.pixel_scale_arcsec
    snr = m["snr"].max(1)
    chi2 = m["chi2"][np.arange(M), m["snr"].argmax(1)]
    ok = (kinds != EMPTY) & (snr >= inst.detect_snr) & ((chi2 <= inst.chi2_max) | (snr >= inst.chi2_bright_snr))
    r = np.flatnonzero(ok)
    dist = np.hypot(ex.X[r, 2:] - m["x"][r, None], ex.Y[r, 2:] - m["y"][r, None])
    ok[r[np.any(ex.star_cat[r, 2:] & (dist < fwhm_px), axis=1)]] = False
    r = np.flatnonzero(ok & np.isin(kinds, [KIND["diffraction_spike"], KIND["halo"], KIND["ghost"], KIND["latent"]]))
    ok[r[rng.random(len(r)) < cfg.flag_probability]] = False        # artifact flags drop them
    return ok


# ------------------------------------------------------------------ 5. the QA sheet
def _assemble(inst: Instrument, cfg: SimConfig, frame: Frame, sv: Survey, sn: Scene, ex: Exposures, lk: Links,
              diagnostics) -> SheetBatch:
    """The QA sheets of the accepted candidates: cutouts recentred on the fitted motion, the
    composite, scalars measured from pixels, astrometry, and the truth kept apart."""
    n = sv.mask.shape[0]
    C = 2
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
    resid = np.hypot(lk.gx[fi] - pred_x, lk.gy[fi] - pred_y) * scale
    sdist = np.hypot(X[fi, 2:] - meas["x"][fi, None], Y[fi, 2:] - meas["y"][fi, None])
    sdist = np.where(ex.star_cat[fi, 2:], sdist, np.inf)     # the pipeline knows catalogued stars only
    nearest = np.argmin(sdist, axis=1)
    dmin = sdist[np.arange(len(fi)), nearest]
    has_star = np.isfinite(dmin)
    star_dist = np.where(has_star, dmin * scale, np.nan)
    smag = np.where(has_star, ex.star_mag[fi, 2:][np.arange(len(fi)), nearest], np.nan)
    near_flag = (star_dist < 3 * np.mean(inst.fwhm_arcsec)).astype(np.float32)
    t_obs = sv.times[osi, ei[fi]]
    starts = np.concatenate([[0], np.cumsum(kk)[:-1]])            # rows are sorted by sheet
    t_start = np.minimum.reduceat(t_obs, starts)
    obs_scalars = np.stack([
        (t_obs - t_start[sheet_of]) * 24.0, resid, snr[:, 0], snr[:, 1], mag[:, 0], mag[:, 1],
        magerr[:, 0], magerr[:, 1], chi2, ex.sky[fi, 0], ex.sky[fi, 1], near_flag, star_dist, smag,
    ], axis=1).astype(np.float32)
    assert obs_scalars.shape[1] == len(OBS_SCALARS)

    # Astrometry of each detection, from its measured position.
    det_eq = geo.deproject(lk.gx[fi], lk.gy[fi], sn.centre_eq[osi], scale)
    lon, lat = geo.unit_to_lonlat(det_eq)

    # Composite: background-subtracted cutouts averaged in the moving frame.
    comp = composite(cut, ex.sky[fi], kk)
    comp_noise = np.sqrt(np.add.reduceat(ex.noise_est[fi] ** 2, starts, axis=0)) / kk[:, None]
    centre = np.full(N, S // 2, float)
    cm = render.measure(comp, centre, centre, frame.sigma_px, np.zeros((N, C)), comp_noise, iters=0, refine=False)

    # Sheet scalars: summaries of the observations (as corrupt.refresh recomputes them),
    # the motion fit, the composite and where the sheet lies on the sky.
    sheet = summarise(dict(zip(OBS_SCALARS, obs_scalars.T)), kk, inst.detect_snr)
    _, ecl_lat = geo.unit_to_lonlat(sv.pointing_ecl[keep_idx])
    sun = -geo.earth_position(sv.t_mid[keep_idx])
    sheet.update({
        "rate_deg_per_day": lk.fit_rate[keep_idx],
        "position_angle_deg": np.rad2deg(np.arctan2(-lk.vx[keep_idx], lk.vy[keep_idx])) % 360.0,
        "composite_snr_ch1": cm["snr"][:, 0], "composite_snr_ch2": cm["snr"][:, 1],
        "ecliptic_lat_deg": ecl_lat, "galactic_lat_deg": geo.galactic_latitude(sn.centre_eq[keep_idx]),
        "solar_elongation_deg": np.rad2deg(np.arccos(np.clip(np.sum(
            sun / np.linalg.norm(sun, axis=-1, keepdims=True) * sv.pointing_ecl[keep_idx], -1), -1, 1))),
    })
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
    span_days = np.maximum(sv.t_last - sv.t_first, 1e-6)[ks]
    true_rate = np.where(has_obj[ks], np.hypot(_endpoint(sn.ax, sv.mask)[ks], _endpoint(sn.ay, sv.mask)[ks])
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
    at = {o: lk.here[fi] & (sn.oid_p[fi] == o) for o in (0, 1)}
    observer = _observer(inst, t_obs, sv.phase0[osi])
    truth_obs = {"source_kind": lk.kind[fi].astype(np.int8), "object_id": ooid.astype(np.int16),
                 "true_x_px": (lk.true_x[fi] - centre_x).astype(np.float32),
                 "true_y_px": (lk.true_y[fi] - centre_y).astype(np.float32),
                 "object_x_px": _if(at[0], X[fi, 0] - centre_x), "object_y_px": _if(at[0], Y[fi, 0] - centre_y),
                 "object2_x_px": _if(at[1], X[fi, 0] - centre_x), "object2_y_px": _if(at[1], Y[fi, 0] - centre_y),
                 "observer_x_au": observer[:, 0], "observer_y_au": observer[:, 1], "observer_z_au": observer[:, 2]}
    return SheetBatch(
        sheet_id=np.array([""] * N, dtype=object), label=clean.copy(), k=kk.astype(np.int32),
        composite=comp, sheet_scalars=sheet_scalars, cutouts=cut,
        obs_scalars=obs_scalars, ra=lon, dec=lat, mjd=t_obs, band=band.astype(np.int8),
        mag=mag[np.arange(len(fi)), band].astype(np.float32),
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


def _endpoint(a, mask):
    """Displacement between the first and last valid exposure, per row."""
    first = np.argmax(mask, axis=1)
    last = mask.shape[1] - 1 - np.argmax(mask[:, ::-1], axis=1)
    rows = np.arange(a.shape[0])
    return a[rows, last] - a[rows, first]
