"""False detections at the densities a frame has, and the hypotheses a linker strings through them.

Every exposure holds false detections wherever they fall: noise peaks (their density measured from
the pipeline's own matched filter on white noise, ``Instrument.noise_peak_density_px2``), cosmic
rays, hot pixels, latents, uncatalogued stars and unrelated asteroids (``false_density_deg2``,
SETTINGS), and near a bright star its diffraction spikes, halo, optical ghost and latent (features
whose extent follows from the rendered star, ``SimConfig``). A false tracklet is what the linker
makes of them: a linear motion from its search (uniform in the velocity disk of the rate window,
as pairs of detections in successive exposures give), covered by the survey's exposures, holding a
detection within tolerance in enough successive exposures to make a chain. Such tracklets are rare,
so they are drawn given that they happened: many hypotheses per candidate, each weighted by the
probability that the linker accepts it (``linker.accept_probability``), one resampled by weight,
and its detections drawn given acceptance (``linker.sample_accepted``). Their rates, position
angles, lengths and kinds come out of the linker and the fields, not from a chosen distribution.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from neoqa.data.schema import SOURCE_CODE
from neoqa.simulate import render
from neoqa.simulate.linker import _step

DEG2_PER_PX2 = 1.0 / 3600.0**2                     # times scale^2 (arcsec^2 per px)
FIELD_KINDS = ("noise", "cosmic_ray", "hot_pixel", "latent", "star_residual", "other_object")
# Components of a hypothesis's expected detections at one exposure, in this order.
FIELD, SPIKE, HALO, GHOST, LATENT = range(5)
COMPONENT_KIND = (-1, SOURCE_CODE["diffraction_spike"], SOURCE_CODE["halo"], SOURCE_CODE["ghost"],
                  SOURCE_CODE["latent"])
# Bright-star parameters of an artifact hypothesis (columns of ``Stars.table``), in tangent-plane
# pixels relative to the hypothesis's position at the mid-time.
STAR_COLS = ("x", "y", "reach", "ring_r", "ring_on", "ghost_x", "ghost_y", "ghost_mu", "latent_x", "latent_y",
             "latent_mu")


def field_density(inst, cfg, gal_lat_deg, ecl_lat_deg):
    """Per candidate, the density (per px^2 of one exposure) of each field kind [n, 6] at its
    pointing, and the share of noise peaks in each band [2]. Artifacts the flagger marks (cc_flags
    d, h, o, p: ``flag_probability``) are dropped by the pipeline whatever their pixels, so only the
    unflagged ones are drawn, here and in ``feature_densities``."""
    px2 = inst.pixel_scale_arcsec**2 * DEG2_PER_PX2
    d = inst.false_density_deg2
    star = 1 + cfg.star_plane_boost * np.exp(-np.abs(gal_lat_deg) / cfg.star_plane_scale_deg)
    n = len(gal_lat_deg)
    out = np.empty((n, len(FIELD_KINDS)))
    out[:, 0] = sum(inst.noise_peak_density_px2)
    out[:, 1] = d["cosmic_ray"] * px2
    out[:, 2] = d["hot_pixel"] * px2
    out[:, 3] = d["latent"] * px2 * (1 - cfg.flag_probability)
    out[:, 4] = d["star_residual"] * px2 * star
    out[:, 5] = d["other_object"] * px2 * np.exp(-np.abs(ecl_lat_deg) / 12.0)
    band = np.asarray(inst.noise_peak_density_px2, float)
    return out, band / band.sum()


def noise_peak_snr(rng, n, threshold):
    """Heights of noise peaks above ``threshold`` (matched-filter S/N). For a smooth Gaussian field
    the density of peaks above u goes as u exp(-u^2 / 2) (its Euler characteristic, Adler 1981), so
    heights above the threshold t have survival function u exp(-u^2/2) / (t exp(-t^2/2)): inverted
    by Newton from the Rayleigh-tail start."""
    v = rng.random(n)
    target = np.log(v) + np.log(threshold) - 0.5 * threshold**2
    u = np.sqrt(threshold**2 - 2 * np.log(v))
    for _ in range(6):
        u = u - (np.log(u) - 0.5 * u * u - target) / (1.0 / u - u)
    return u


# ------------------------------------------------------------------ bright stars of artifact tracklets
class Stars:
    """Bright stars of artifact hypotheses: magnitude, per-band flux (DN) and feature geometry.

    Magnitudes follow the star counts (d log N / d mag = ``star_count_slope``) between
    ``bright_star_mag``; a spike spawns detections out to where its surface brightness falls to
    ``feature_snr`` times the pixel noise (so its reach follows from the rendered spike), the halo
    where its ring is that bright; the W2 ghost and the latent, of stars brighter than their limits,
    are blobs a fixed offset away holding ``ghost_mu`` / ``latent_mu`` detections per exposure."""

    def __init__(self, rng, inst, cfg, frame, n):
        lo, hi = cfg.bright_star_mag
        k = cfg.star_count_slope
        u = rng.random(n)
        self.mag = np.log10(10 ** (k * lo) + u * (10 ** (k * hi) - 10 ** (k * lo))) / k
        colour = rng.normal(0.05, 0.1, n)
        self.flux = np.stack([10 ** (-0.4 * (self.mag - frame.zp[0])),
                              10 ** (-0.4 * (self.mag - colour - frame.zp[1]))], axis=1)
        sig_pix = frame.pixel_noise(np.array(inst.depth_5sigma_mag))
        peak = np.array([render.pixel_profile(np.array([0.0]), np.array([s]), 1)[0, 0] for s in frame.sigma_px])
        spike = SPIKE_FRACTION * self.flux * peak / (cfg.feature_snr * sig_pix)
        self.reach = np.maximum(np.max(spike, axis=1) ** (2.0 / 3.0) - 1.0, 0.0)
        self.ring_r = rng.uniform(*cfg.halo_radius_px, n)
        ring = HALO_FRACTION * self.flux / (2 * np.pi * self.ring_r[:, None]) / (cfg.feature_snr * sig_pix)
        self.ring_on = np.max(ring, axis=1) >= 1.0
        ang = rng.uniform(0, 2 * np.pi, n)
        dist = rng.uniform(*cfg.ghost_offset_px, n)
        self.ghost = np.stack([dist * np.cos(ang), dist * np.sin(ang)], 1)
        kept = 1 - cfg.flag_probability
        self.ghost_mu = np.where(self.mag <= cfg.ghost_max_mag, cfg.ghost_mu * kept, 0.0)
        self.latent = np.stack([np.zeros(n), rng.uniform(*cfg.latent_offset_px, n)], 1)  # along the scan
        self.latent_mu = np.where(self.mag <= cfg.latent_max_mag, cfg.latent_mu * kept, 0.0)
        self.extent = np.maximum.reduce([self.reach, self.ring_r + cfg.blob_radius_px,
                                         np.hypot(*self.ghost.T) + cfg.blob_radius_px,
                                         np.hypot(*self.latent.T) + cfg.blob_radius_px])

    def table(self, x, y):
        """The ``STAR_COLS`` table with each star at (x, y) from its hypothesis."""
        return np.stack([x, y, self.reach, self.ring_r, self.ring_on.astype(float), x + self.ghost[:, 0],
                         y + self.ghost[:, 1], self.ghost_mu, x + self.latent[:, 0], y + self.latent[:, 1],
                         self.latent_mu], axis=1)


def feature_densities(cfg):
    """Unflagged detections per exposure per pixel of spike arm and of halo ring."""
    kept = 1 - cfg.flag_probability
    return cfg.spike_density_px * kept, cfg.halo_density_px * kept


# Share of a bright star's flux in its spikes (per pixel of arm at 1 px, falling as d^-1.5) and halo
# ring: the rendering model's constants (SETTINGS), shared with the generator's BrightStar.
SPIKE_FRACTION = 2e-3
HALO_FRACTION = 5e-3


# ------------------------------------------------------------------ expected detections near a point
@njit(inline="always")
def _chord(c, h, lo, hi):
    """Length of [c - h, c + h] inside [lo, hi]."""
    return max(0.0, min(c + h, hi) - max(c - h, lo))


@njit(inline="always")
def _lens(d, r1, r2):
    """Area shared by two disks of radii r1, r2 whose centres are d apart."""
    if d >= r1 + r2:
        return 0.0
    if d <= abs(r1 - r2):
        r = min(r1, r2)
        return math.pi * r * r
    a1 = r1 * r1 * math.acos((d * d + r1 * r1 - r2 * r2) / (2 * d * r1))
    a2 = r2 * r2 * math.acos((d * d + r2 * r2 - r1 * r1) / (2 * d * r2))
    k = 0.5 * math.sqrt(max(0.0, (-d + r1 + r2) * (d + r1 - r2) * (d - r1 + r2) * (d + r1 + r2)))
    return a1 + a2 - k


@njit(inline="always")
def _arc_half_angle(d, radius, tol):
    """Half the angle of a ring of ``radius`` inside a disk of radius ``tol`` whose centre is d from
    the ring's centre (pi where the whole ring is inside, 0 where none)."""
    if d + radius <= tol:
        return math.pi
    if abs(d - radius) >= tol or d == 0.0:
        return 0.0
    c = (d * d + radius * radius - tol * tol) / (2 * d * radius)
    return math.acos(min(1.0, max(-1.0, c)))


@njit(inline="always")
def _components(qx, qy, star, tol, r_in, lam_spike, lam_halo, blob_r, out):
    """Expected detections within ``tol`` of (qx, qy) from each feature of ``star`` (STAR_COLS)
    into out[1:5] (spike, halo, ghost, latent)."""
    sx, sy, reach = star[0], star[1], star[2]
    dx, dy = qx - sx, qy - sy
    spike = 0.0
    if reach > r_in:
        if abs(dy) < tol:
            h = math.sqrt(tol * tol - dy * dy)
            spike += _chord(dx, h, r_in, reach) + _chord(-dx, h, r_in, reach)
        if abs(dx) < tol:
            h = math.sqrt(tol * tol - dx * dx)
            spike += _chord(dy, h, r_in, reach) + _chord(-dy, h, r_in, reach)
    out[SPIKE] = lam_spike * spike
    out[HALO] = 0.0
    if star[4] > 0:
        out[HALO] = lam_halo * 2 * star[3] * _arc_half_angle(math.hypot(dx, dy), star[3], tol)
    area = math.pi * blob_r * blob_r
    out[GHOST] = star[7] / area * _lens(math.hypot(qx - star[5], qy - star[6]), tol, blob_r)
    out[LATENT] = star[10] / area * _lens(math.hypot(qx - star[8], qy - star[9]), tol, blob_r)


@njit(inline="always")
def _exposure_p(i, c, e, x, y, avail, cov, k_rad, sin_hw, neos, box, base, p_base, star, tol, r_in, lam_spike,
                lam_halo, blob_r, comp):
    """The probability that slot e of candidate c holds a detection within ``tol`` of hypothesis i,
    at (x, y); -1 where the slot is not an exposure of it (lost, or outside the coverage)."""
    if not avail[c, e]:
        return -1.0
    if neos:
        inside = abs(x - box[c, 0]) <= box[c, 2] and abs(y - box[c, 1]) <= box[c, 3]
    else:
        f = (cov[c, 0, e] + cov[c, 1, e] * x + cov[c, 2, e] * y) / math.sqrt(1 + k_rad * k_rad * (x * x + y * y))
        inside = abs(f) <= sin_hw
    if not inside:
        return -1.0
    if star[i, 2] > 0 or star[i, 4] > 0 or star[i, 7] > 0 or star[i, 10] > 0:
        _components(x, y, star[i], tol, r_in, lam_spike, lam_halo, blob_r, comp)
        return 1.0 - math.exp(-(base + comp[1] + comp[2] + comp[3] + comp[4]))
    return p_base


@njit(cache=True)
def hypothesis_p(cand, vx, vy, dt, avail, cov, k_rad, sin_hw, neos, box, lam_field, star, tol, r_in, lam_spike,
                 lam_halo, blob_r):
    """Per hypothesis (a linear motion (vx dt, vy dt) in the tangent plane of candidate ``cand``),
    the probability [N, E] that each exposure holds a detection within ``tol`` (-1 where the slot is
    not an exposure: lost, or the motion leaves the survey's coverage).

    Coverage: WISE (``neos`` False) sees a position while it is within the scan's half-width of 90
    deg from the Sun: |u.s| <= sin_hw with u.s = (a + bx x + by y) / sqrt(1 + k^2 (x^2 + y^2))
    (``cov`` [n, 3, E]: a, bx, by per slot; exact for the gnomonic projection); NEO Surveyor sees it
    while it is in the field, ``box`` [n, 4] (centre x, y and half-widths, px). ``star`` [N, 11]
    (STAR_COLS; zeros where there is no star)."""
    N = cand.shape[0]
    E = dt.shape[1]
    p = np.empty((N, E))
    comp = np.zeros(5)
    for i in range(N):
        c = cand[i]
        base = lam_field[c] * math.pi * tol * tol
        p_base = -math.expm1(-base)
        for e in range(E):
            p[i, e] = _exposure_p(i, c, e, vx[i] * dt[c, e], vy[i] * dt[c, e], avail, cov, k_rad, sin_hw, neos,
                                  box, base, p_base, star, tol, r_in, lam_spike, lam_halo, blob_r, comp)
    return p


@njit(cache=True)
def hypothesis_weights(cand, vx, vy, dt, avail, cov, k_rad, sin_hw, neos, box, lam_field, star, tol, r_in,
                       lam_spike, lam_halo, blob_r, min_links, max_gap, reach):
    """Per hypothesis, its resampling weight: the probability that the linker accepts it
    (``linker.accept_probability`` over ``hypothesis_p``, computed in one pass) and, where its star
    was proposed near the hypothesis at a random slot within ``reach`` (> 0), the importance weight
    reach^2 / (slots whose hypothesis point lies within reach of the star) that turns the proposal
    into a star uniform on the sky.

    Without a star every exposure of a candidate has the same probability, and the automaton skips
    the slots that are not exposures, so the acceptance depends only on how many exposures cover
    the hypothesis: it is read from the candidate's table of the automaton after 0..E exposures
    (the same arithmetic in the same order, so the same numbers)."""
    N = cand.shape[0]
    n, E = dt.shape
    S = 2 + (min_links - 1) * (max_gap + 1)
    out = np.empty(N)
    comp = np.zeros(5)
    alpha = np.empty(S)
    new = np.empty(S)
    table = np.full((n, E + 1), -1.0)
    for i in range(N):
        c = cand[i]
        base = lam_field[c] * math.pi * tol * tol
        p_base = -math.expm1(-base)
        plain = reach[i] <= 0 and not (star[i, 2] > 0 or star[i, 4] > 0 or star[i, 7] > 0 or star[i, 10] > 0)
        if plain:
            if table[c, 0] < 0:
                alpha[:] = 0.0
                alpha[0] = 1.0
                table[c, 0] = alpha[S - 1]
                for e in range(E):
                    _step(alpha, new, p_base, min_links, max_gap)
                    alpha[:] = new
                    table[c, e + 1] = alpha[S - 1]
            count = 0
            for e in range(E):
                if _exposure_p(i, c, e, vx[i] * dt[c, e], vy[i] * dt[c, e], avail, cov, k_rad, sin_hw, neos, box,
                               base, p_base, star, tol, r_in, lam_spike, lam_halo, blob_r, comp) >= 0:
                    count += 1
            out[i] = table[c, count]
            continue
        alpha[:] = 0.0
        alpha[0] = 1.0
        near = 0
        for e in range(E):
            x = vx[i] * dt[c, e]
            y = vy[i] * dt[c, e]
            if reach[i] > 0 and math.hypot(star[i, 0] - x, star[i, 1] - y) < reach[i]:
                near += 1
            pe = _exposure_p(i, c, e, x, y, avail, cov, k_rad, sin_hw, neos, box, base, p_base, star, tol, r_in,
                             lam_spike, lam_halo, blob_r, comp)
            if pe < 0:
                continue
            _step(alpha, new, pe, min_links, max_gap)
            alpha[:] = new
        out[i] = alpha[S - 1]
        if reach[i] > 0:
            out[i] *= reach[i] * reach[i] / max(near, 1)
    return out


@njit(cache=True)
def components_at(x, y, star, base, tol, r_in, lam_spike, lam_halo, blob_r):
    """The expected detections of each component [M, 5] at points (x, y) (``base``: the field's)."""
    M = x.shape[0]
    out = np.zeros((M, 5))
    comp = np.zeros(5)
    for m in range(M):
        _components(x[m], y[m], star[m], tol, r_in, lam_spike, lam_halo, blob_r, comp)
        out[m, 0] = base[m]
        for j in range(1, 5):
            out[m, j] = comp[j]
    return out


def place_hits(rng, comp, qx, qy, star, tol, r_in, blob_r):
    """A position for each detection of component ``comp`` [M] near the hypothesis at (qx, qy): the
    field's uniform in the tolerance disk, a spike's on its arm's chord, a halo's on its ring's arc,
    a blob's uniform where blob and disk meet."""
    M = len(comp)
    r = tol * np.sqrt(rng.random(M))
    a = rng.uniform(0, 2 * np.pi, M)
    x, y = qx + r * np.cos(a), qy + r * np.sin(a)
    sx, sy = star[:, 0], star[:, 1]
    # spikes: the arm with the longest chord inside the disk, a point uniform along it
    s = np.flatnonzero(comp == SPIKE)
    if len(s):
        dx, dy, reach = qx[s] - sx[s], qy[s] - sy[s], star[s, 2]
        hx = np.sqrt(np.clip(tol**2 - dy**2, 0, None))
        hy = np.sqrt(np.clip(tol**2 - dx**2, 0, None))
        arms = []
        for sign, c, h in ((1, dx, hx), (-1, -dx, hx), (1, dy, hy), (-1, -dy, hy)):
            lo, hi = np.maximum(c - h, r_in), np.minimum(c + h, reach)
            arms.append((lo, hi))
        length = np.stack([np.clip(hi - lo, 0, None) for lo, hi in arms], 1)
        cum = np.cumsum(length, 1)
        pick = np.argmax(cum >= rng.random(len(s))[:, None] * cum[:, -1:], axis=1)
        lo = np.choose(pick, [a_[0] for a_ in arms])
        hi = np.choose(pick, [a_[1] for a_ in arms])
        t = lo + rng.random(len(s)) * np.clip(hi - lo, 0, None)
        ux = np.array([1.0, -1.0, 0.0, 0.0])[pick]
        uy = np.array([0.0, 0.0, 1.0, -1.0])[pick]
        x[s], y[s] = sx[s] + t * ux, sy[s] + t * uy
    h = np.flatnonzero(comp == HALO)
    if len(h):
        dx, dy, radius = qx[h] - sx[h], qy[h] - sy[h], star[h, 3]
        d = np.hypot(dx, dy)
        half = np.array([_arc_half_angle(di, ri, tol) for di, ri in zip(d, radius)])
        ang = np.arctan2(dy, dx) + rng.uniform(-1, 1, len(h)) * half
        x[h], y[h] = sx[h] + radius * np.cos(ang), sy[h] + radius * np.sin(ang)
    for code, cx, cy in ((GHOST, 5, 6), (LATENT, 8, 9)):
        b = np.flatnonzero(comp == code)
        if len(b) == 0:
            continue
        # uniform in the blob, kept where it is within tolerance (a few hundred tries leave none out)
        tries = 256
        rr = blob_r * np.sqrt(rng.random((len(b), tries)))
        aa = rng.uniform(0, 2 * np.pi, (len(b), tries))
        px = star[b, cx][:, None] + rr * np.cos(aa)
        py = star[b, cy][:, None] + rr * np.sin(aa)
        ok = np.hypot(px - qx[b, None], py - qy[b, None]) <= tol
        first = np.argmax(ok, axis=1)
        rows = np.arange(len(b))
        x[b] = np.where(ok.any(1), px[rows, first], x[b])
        y[b] = np.where(ok.any(1), py[rows, first], y[b])
    return x, y


def measure_noise_peak_density(inst, size=2048, images=4, seed=0):
    """Noise peaks per px^2 per band [C] at the detection threshold, measured as the pipeline
    would find them: white noise of unit variance, matched-filtered by the pixel-integrated PSF at
    each of the measurement's sub-pixel offsets (``render.REFINE_STEPS``), the best offset at each
    pixel, local maxima (3 x 3) at or above ``detect_snr``. The source of
    ``Instrument.noise_peak_density_px2`` (benchmarks/measure_noise_peaks.py)."""
    from scipy import ndimage, signal

    from neoqa.simulate.photometry import Frame

    rng = np.random.default_rng(seed)
    steps = np.asarray(render.REFINE_STEPS)
    out = []
    for sigma in Frame(inst).sigma_px:
        kernels_ = []
        for dy in steps:
            for dx in steps:
                hx = render.pixel_profile(np.array([6.0 + dx]), np.array([sigma]), 13)[0].astype(np.float64)
                hy = render.pixel_profile(np.array([6.0 + dy]), np.array([sigma]), 13)[0].astype(np.float64)
                h = np.outer(hy, hx)
                kernels_.append(h[::-1, ::-1] / np.sqrt(np.sum(h * h)))
        count = area = 0
        for _ in range(images):
            noise = rng.standard_normal((size, size))
            best = np.max([signal.fftconvolve(noise, h, mode="valid") for h in kernels_], axis=0)
            peaks = (best == ndimage.maximum_filter(best, size=3)) & (best >= inst.detect_snr)
            count += int(peaks.sum())
            area += best.size
        out.append(count / area)
    return np.array(out)
