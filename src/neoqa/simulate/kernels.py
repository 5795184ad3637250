"""Compiled kernels: rendering with sky, noise and saturation, noise peaks, the sky estimate,
pipeline measurement and cutouts.

The simulator spends most of its time on small images (a 19 x 19 patch per
exposure, two channels). NumPy pays for a temporary array at every step there;
``expose`` renders, adds noise, saturates, takes the sky and measures the primary
detection of each patch in one pass, ``measure`` fits a detection in one pass over
its window (the linker's motion fit is ``data.motion.fit_tracklets``, shared with ingest). They
are serial on purpose: parallelism comes from ``--workers`` (one shard per process),
so the bytes never depend on thread scheduling.

Noise comes from one random stream per exposure: a 64-bit seed drawn from the
batch's NumPy generator starts a SplitMix64 sequence (Steele, Lea & Flood 2014),
turned into Gaussians by the ziggurat method (Marsaglia & Tsang 2000, 128 layers)
with independent bits choosing the layer (Doornik 2005). The same seed gives the
same patch whatever else is rendered, so the output is a pure function of the
batch generator.

Pixel profiles are the tabulated pixel-integrated Gaussians of ``render`` (one
table per width, linear interpolation), so kernels and NumPy code agree.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit


# Floating-point sums may be reordered (so loops vectorise); NaN and inf keep their meaning.
FAST = {"reassoc", "contract", "arcp"}

# ------------------------------------------------------------------ random numbers
_M1 = 2147483648.0          # 2^31: ziggurat values are signed 32-bit integers
_R = 3.442619855899         # start of the tail
_V = 9.91256303526217e-3    # area of each layer


def _ziggurat_tables():
    kn = np.zeros(128, np.int64)
    wn = np.zeros(128)
    fn = np.zeros(128)
    dn = tn = _R
    q = _V / math.exp(-0.5 * dn * dn)
    kn[0] = int((dn / q) * _M1)
    kn[1] = 0
    wn[0] = q / _M1
    wn[127] = dn / _M1
    fn[0] = 1.0
    fn[127] = math.exp(-0.5 * dn * dn)
    for i in range(126, 0, -1):
        dn = math.sqrt(-2.0 * math.log(_V / dn + math.exp(-0.5 * dn * dn)))
        kn[i + 1] = int((dn / tn) * _M1)
        tn = dn
        fn[i] = math.exp(-0.5 * dn * dn)
        wn[i] = dn / _M1
    return kn, wn, fn


KN, WN, FN = _ziggurat_tables()


@njit(inline="always")
def _next(state):
    """SplitMix64: the new state and a well-mixed 64-bit output."""
    state = state + np.uint64(0x9E3779B97F4A7C15)
    z = state
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return state, z ^ (z >> np.uint64(31))


@njit(inline="always")
def _uniform(state):
    """Uniform on (0, 1), never 0 (it feeds a logarithm)."""
    state, z = _next(state)
    return state, ((z >> np.uint64(11)) + 0.5) * (1.0 / 9007199254740992.0)


@njit(inline="always")
def _layer(z):
    """A signed 32-bit ziggurat value and, from other bits, its layer (Doornik 2005)."""
    return np.int64(z & np.uint64(0xFFFFFFFF)) - 2147483648, np.int64((z >> np.uint64(32)) & np.uint64(127))


@njit
def _normal_slow(state, hz, iz):
    """The 3% of draws outside a layer's rectangle: the wedge test, or the tail beyond _R."""
    while True:
        if iz == 0:
            while True:
                state, u1 = _uniform(state)
                state, u2 = _uniform(state)
                x = -math.log(u1) / _R
                if -2.0 * math.log(u2) >= x * x:
                    return state, (_R + x) if hz > 0 else -(_R + x)
        x = hz * WN[iz]
        state, u = _uniform(state)
        if FN[iz] + u * (FN[iz - 1] - FN[iz]) < math.exp(-0.5 * x * x):
            return state, x
        state, z = _next(state)
        hz, iz = _layer(z)
        if abs(hz) < KN[iz]:
            return state, hz * WN[iz]


@njit(inline="always")
def _normal(state):
    """The new state and one standard normal (the tables are compile-time constants)."""
    state, z = _next(state)
    hz, iz = _layer(z)
    if abs(hz) < KN[iz]:
        return state, hz * WN[iz]
    return _normal_slow(state, hz, iz)


@njit(cache=True)
def normals(seed, n):
    """``n`` standard normals from one seed (for tests and diagnostics)."""
    out = np.empty(n)
    state = np.uint64(seed)
    for i in range(n):
        state, out[i] = _normal(state)
    return out


# ------------------------------------------------------------------ pixel profiles
LUT_REACH = 64.0
LUT_STEP = 1.0 / 128


@njit(inline="always")
def _profile(tables, start, length, centre, out, scale):
    """out[i] = scale x (pixel-integrated Gaussian at pixel i), from the table at ``start``.

    Pixels are whole table steps apart, so every pixel shares one interpolation weight.
    """
    stride = int(1.0 / LUT_STEP)
    pos = (LUT_REACH - np.float64(centre)) / LUT_STEP
    j0 = int(math.floor(pos))
    f = np.float32(pos - j0)
    n = out.shape[0]
    if j0 >= 0 and j0 + stride * (n - 1) <= length - 2:       # all inside the table: no tests
        t = tables[start + j0:start + j0 + stride * (n - 1) + 2]
        for i in range(n):
            out[i] = scale * (t[stride * i] * (1 - f) + t[stride * i + 1] * f)
        return
    for i in range(n):
        j = j0 + stride * i
        if 0 <= j <= length - 2:
            out[i] = scale * (tables[start + j] * (1 - f) + tables[start + j + 1] * f)
        else:
            out[i] = 0


# ------------------------------------------------------------------ exposures
WINDOW = 7                  # measurement window (pixels): +-3.5 PSF sigma for WISE
_H = WINDOW // 2
# Sources are rendered where they add at least this fraction of the pixel noise: what is
# left out is a thousand times below the noise, and most sources are faint, so this
# skips most of each source's 13 x 13 pixel 1e-9 support.
SOURCE_FLOOR = 1e-3


@njit(inline="always")
def _add_source(im, x, y, f, start, length, tables, px, py, floor):
    """im += f x (separable pixel-integrated Gaussian at x, y), over the rows and columns
    where f x profile exceeds ``floor`` and the profile 1e-9 (every pixel left out
    would add less than that: callers pass a small fraction of the pixel noise)."""
    _profile(tables, start, length, x, px, np.float32(1))
    _profile(tables, start, length, y, py, np.float32(1))
    cut = max(1e-9, floor / abs(f))
    x0, x1 = _support(px, cut)
    y0, y1 = _support(py, cut)
    for j in range(y0, y1):
        fy = f * py[j]
        for i in range(x0, x1):
            im[j, i] += fy * px[i]


@njit(inline="always")
def _condition(im, x, y, level, snr, noise, start, length, tables, px, py, dx, dy, basis):
    """Make a noise peak of matched-filter S/N ``snr`` at (x, y): in the measurement's window
    there, set the noise's component along the PSF to snr x ``noise`` and remove its components
    along the PSF's two derivatives (Gram-Schmidt), so that the pipeline's matched filter peaks at
    (x, y) with exactly that height. Conditioning white noise on these projections draws no pixel's
    noise twice (``basis``: scratch [3, WINDOW, WINDOW])."""
    P = im.shape[0]
    ix = int(min(max(np.rint(x), _H), P - 1 - _H)) - _H
    iy = int(min(max(np.rint(y), _H), P - 1 - _H)) - _H
    eps = np.float32(0.05)
    _profile(tables, start, length, x + eps, dx, np.float32(1))
    _profile(tables, start, length, x - eps, px, np.float32(1))
    for u in range(P):
        dx[u] = (dx[u] - px[u]) / (2 * eps)
    _profile(tables, start, length, y + eps, dy, np.float32(1))
    _profile(tables, start, length, y - eps, py, np.float32(1))
    for u in range(P):
        dy[u] = (dy[u] - py[u]) / (2 * eps)
    _profile(tables, start, length, x, px, np.float32(1))
    _profile(tables, start, length, y, py, np.float32(1))
    for j in range(WINDOW):
        for i in range(WINDOW):
            basis[0, j, i] = py[iy + j] * px[ix + i]
            basis[1, j, i] = py[iy + j] * dx[ix + i]
            basis[2, j, i] = dy[iy + j] * px[ix + i]
    for b in range(3):                     # orthonormalise
        for a in range(b):
            d = 0.0
            for j in range(WINDOW):
                for i in range(WINDOW):
                    d += basis[a, j, i] * basis[b, j, i]
            for j in range(WINDOW):
                for i in range(WINDOW):
                    basis[b, j, i] -= d * basis[a, j, i]
        d = 0.0
        for j in range(WINDOW):
            for i in range(WINDOW):
                d += basis[b, j, i] * basis[b, j, i]
        d = 1.0 / math.sqrt(max(d, 1e-30))
        for j in range(WINDOW):
            for i in range(WINDOW):
                basis[b, j, i] *= d
    for b in range(3):
        d = 0.0
        for j in range(WINDOW):
            for i in range(WINDOW):
                d += (im[iy + j, ix + i] - level) * basis[b, j, i]
        if b == 0:                         # the peak: snr x noise along the normalised PSF
            d -= snr * noise
        for j in range(WINDOW):
            for i in range(WINDOW):
                im[iy + j, ix + i] -= d * basis[b, j, i]


@njit(inline="always")
def _support(p, cut):
    """The index range [lo, hi) where a unit profile exceeds ``cut``."""
    lo, hi = 0, p.shape[0]
    while lo < hi and p[lo] <= cut:
        lo += 1
    while hi > lo and p[hi - 1] <= cut:
        hi -= 1
    return lo, hi


@njit(cache=True)
def add_points(img, rows, X, Y, F, tab, tables, length):
    """img[rows[m], c] += every source s of row m: F[m, s, c] at (X[m, s], Y[m, s]).

    F: [M, S, C] fluxes (0 = absent); tab: [M, S, C] the profile table of each.
    """
    P = img.shape[-1]
    px = np.empty(P, np.float32)
    py = np.empty(P, np.float32)
    for m in range(rows.shape[0]):
        for c in range(img.shape[1]):
            for s in range(F.shape[1]):
                if F[m, s, c] != 0:
                    _add_source(img[rows[m], c], X[m, s], Y[m, s], F[m, s, c], tab[m, s, c] * length,
                                length, tables, px, py, 0.0)


# Pixels farther than this from a spike arm's line or a halo ring get less than 1e-20 of the
# feature's amplitude (its profiles are Gaussians of width about a pixel): below any pixel's precision.
FEATURE_REACH = 12.0


@njit(inline="always")
def _ring_meets_patch(sx, sy, radius, P):
    """Whether a ring of ``radius`` about (sx, sy) comes within FEATURE_REACH of the patch [0, P-1]^2."""
    dx = max(0.0 - sx, 0.0, sx - (P - 1))
    dy = max(0.0 - sy, 0.0, sy - (P - 1))
    near = math.sqrt(dx * dx + dy * dy)
    fx = max(abs(sx), abs(sx - (P - 1)))
    fy = max(abs(sy), abs(sy - (P - 1)))
    far = math.sqrt(fx * fx + fy * fy)
    return near <= radius + FEATURE_REACH and far >= radius - FEATURE_REACH


# Grouped arguments of the kernels (numba takes named tuples of arrays as they are).
# Sources per exposure: x, y [M, NS] patch pixels; flux [M, NS, C] (0 = absent); width [M, NS], an
# index into the profile tables (laid out [width, channel]; width 0 is the PSF); peak [M, NS], true
# for a noise peak: the noise itself, conditioned to peak there, its flux then being its S/N.
Sources = namedtuple("Sources", "x y flux width peak")
# The bright star of spikes and halos: position [M], spike amplitude [M, C], ring radius [M] and
# amplitude [M, C] (amplitudes 0 where there is none).
BrightStar = namedtuple("BrightStar", "x y spike_amp ring_r ring_amp")
# Per-exposure noise: seeds [M] of its stream; pixel noise, true sky and saturation ceiling [M, C].
Noise = namedtuple("Noise", "seeds sig_pix sky_true ceiling")
# The profiles and the measurement: tables end to end (each ``length`` long), the PSF's table of
# each channel, the mean PSF sigma (the centroid's window), centroid iterations, refine offsets.
Psf = namedtuple("Psf", "tables length psf_tab sigma_mean iters steps")


@njit(cache=True, fastmath=FAST)
def expose(img, used, probe, src, star, noise, psf, annulus):
    """Render, add sky and noise, saturate, estimate the sky and measure the first source
    of every exposure, one exposure at a time (its patch stays in cache throughout).

    Fills ``img`` [M, C, P, P] (any prior content is overwritten: callers reuse one
    buffer, since fresh pages cost more than the rendering). Returns the pipeline sky
    level [M, C] (the true sky with the error of a median over ``annulus`` pixels), and
    ``measure``'s results (x, y, flux, snr, chi2) for source 0 of the rows ``probe``
    (zeros elsewhere), measured against that sky with noise ``sig_pix``.

    ``src``, ``star``, ``noise``, ``psf``: the named tuples above. Exposures not ``used``
    (nothing there for the pipeline to measure) are skipped: their patch is left as it was and
    their sky is 0.
    """
    X, Y, F, width, peak = src.x, src.y, src.flux, src.width, src.peak
    star_x, star_y, spike_amp, ring_r, ring_amp = star.x, star.y, star.spike_amp, star.ring_r, star.ring_amp
    seeds, sig_pix, sky_true, ceiling = noise.seeds, noise.sig_pix, noise.sky_true, noise.ceiling
    tables, length, psf_tab, iters, steps = psf.tables, psf.length, psf.psf_tab, psf.iters, psf.steps
    M, NS, C = F.shape
    P = img.shape[-1]
    sky = np.zeros((M, C), np.float32)
    out = (np.zeros(M), np.zeros(M), np.zeros((M, C)), np.zeros((M, C)), np.zeros((M, C)))
    px = np.empty(P, np.float32)
    py = np.empty(P, np.float32)
    fall_x = np.empty(P, np.float32)
    fall_y = np.empty(P, np.float32)
    basis = np.empty((3, WINDOW, WINDOW), np.float32)
    scratch = _scratch(C, steps.shape[0])
    inv2s2, step2 = _centroid_weight(psf.sigma_mean)
    for m in range(M):
        if not used[m]:
            continue
        state = np.uint64(seeds[m])
        for c in range(C):
            im = img[m, c]
            s_pix, s_sky = sig_pix[m, c], sky_true[m, c]
            for y in range(P):            # sky and noise first: one write per pixel, no read
                for x in range(P):
                    state, g = _normal(state)
                    im[y, x] = s_sky + s_pix * np.float32(g)
            for s in range(NS):
                if peak[m, s] and F[m, s, c] != 0:
                    _condition(im, X[m, s], Y[m, s], s_sky, F[m, s, c], s_pix, c * length, length, tables, px, py,
                               fall_x, fall_y, basis)
            for s in range(NS):
                if F[m, s, c] != 0 and not peak[m, s]:
                    _add_source(im, X[m, s], Y[m, s], F[m, s, c], (width[m, s] * C + c) * length, length, tables,
                                px, py, SOURCE_FLOOR * s_pix)
            a = spike_amp[m, c]
            # Features whose light on the patch is far below a float32 pixel's precision are not
            # added (the pixels would not change): a spike cross whose arms miss the patch, a halo
            # ring that does not come within FEATURE_REACH of it.
            if a != 0 and (-FEATURE_REACH <= star_y[m] <= P - 1 + FEATURE_REACH
                           or -FEATURE_REACH <= star_x[m] <= P - 1 + FEATURE_REACH):
                # a cross of spikes along the pixel axes, falling as distance^-1.5
                _profile(tables, c * length, length, star_x[m], px, np.float32(1))
                _profile(tables, c * length, length, star_y[m], py, np.float32(1))
                for u in range(P):
                    fall_x[u] = 1.0 / (1.0 + abs(u - star_x[m])) ** 1.5
                    fall_y[u] = 1.0 / (1.0 + abs(u - star_y[m])) ** 1.5
                for y in range(P):
                    for x in range(P):
                        im[y, x] += a * (py[y] * fall_x[x] + fall_y[y] * px[x])
            a = ring_amp[m, c]
            if a != 0 and _ring_meets_patch(star_x[m], star_y[m], ring_r[m], P):
                # halo: a ring Gaussian in radius, one pixel wide
                for y in range(P):
                    for x in range(P):
                        r = math.sqrt((x - star_x[m]) ** 2 + (y - star_y[m]) ** 2)
                        im[y, x] += a * math.exp(-0.5 * (r - ring_r[m]) ** 2)
            top = ceiling[m, c]
            for y in range(P):            # saturation
                for x in range(P):
                    im[y, x] = min(im[y, x], top)
            # the pipeline's sky: a robust level from a large annulus around the detection (its
            # error, that of a median of ``annulus`` pixels: 1.2533 sigma / sqrt(n))
            state, g = _normal(state)
            sky[m, c] = s_sky + np.float32(1.2533 * s_pix * g / math.sqrt(annulus))
        if probe[m]:
            _store(_measure_one(img[m], X[m, 0], Y[m, 0], sky[m], sig_pix[m], tables, length, psf_tab, inv2s2,
                                step2, iters, steps, scratch), out, m)
    return sky, out


# ------------------------------------------------------------------ measurement


@njit(inline="always")
def _gaussian_row(out, d0, inv2s2, step2):
    """out[u] = exp(-inv2s2 (d0 + u)^2) by a recurrence: two exponentials instead of one per pixel."""
    v = math.exp(-inv2s2 * d0 * d0)
    r = math.exp(-inv2s2 * (2 * d0 + 1))
    for u in range(out.shape[0]):
        out[u] = v
        v *= r
        r *= step2


@njit(inline="always")
def _centroid_weight(sigma):
    """Constants of the centroid's Gaussian weight of width ``sigma`` (see ``_gaussian_row``)."""
    inv2s2 = 0.5 / sigma**2
    return inv2s2, math.exp(-2 * inv2s2)


@njit(inline="always")
def _measure_one(im, x0, y0, sky, noise, tables, length, psf_tab, inv2s2, step2, iters, steps, scratch):
    """Measure one detection near (x0, y0) in ``im`` [C, P, P]; returns ``res``: x, y, then
    flux, S/N and reduced chi-square per channel. ``scratch``: from ``_scratch``.

    Sums over the window and the refinement grid run in float32 (they only rank
    offsets or feed a centroid); the photometry sums run in float64, since the
    chi-square is a difference of near-equal sums for bright sources.
    """
    win, pos, ex, ey, px, py, nx, ny, a, mx, my, res = scratch
    C, P = im.shape[0], im.shape[-1]
    K_ = steps.shape[0]
    rx, ry = np.rint(x0), np.rint(y0)
    ix = int(min(max(rx, _H), P - 1 - _H))
    iy = int(min(max(ry, _H), P - 1 - _H))
    for yy in range(WINDOW):
        for xx in range(WINDOW):
            pos[yy, xx] = 0
    for c in range(C):
        sk = np.float32(sky[c])
        inv = np.float32(1.0 / max(noise[c], 1e-6))
        for yy in range(WINDOW):
            for xx in range(WINDOW):
                v = im[c, iy - _H + yy, ix - _H + xx] - sk
                win[c, yy, xx] = v
                pos[yy, xx] += v * inv
    for yy in range(WINDOW):
        for xx in range(WINDOW):
            pos[yy, xx] = max(pos[yy, xx], np.float32(0))
    cx = rx - ix
    cy = ry - iy
    for _ in range(iters):            # windowed centroid on the S/N image (separable weight)
        _gaussian_row(ex, -_H - cx, inv2s2, step2)
        _gaussian_row(ey, -_H - cy, inv2s2, step2)
        tot = sx = sy = 0.0
        for yy in range(WINDOW):
            ty = 0.0
            tx = 0.0
            for xx in range(WINDOW):
                w = pos[yy, xx] * ex[xx]
                ty += w
                tx += w * (xx - _H)
            tot += ty * ey[yy]
            sx += tx * ey[yy]
            sy += ty * ey[yy] * (yy - _H)
        if tot > 0:
            cx, cy = sx / tot, sy / tot
        cx = min(max(cx, -_H + 0.5), _H - 0.5)
        cy = min(max(cy, -_H + 0.5), _H - 0.5)
    if K_ > 0:
        # PSF-fit position: the centroid is biased for undersampled PSFs, so finish on
        # a sub-pixel grid, keeping the offset that maximises the matched-filter S/N.
        # The PSF is separable: one profile per grid row and column.
        for k in range(K_):
            for c in range(C):
                _profile(tables, psf_tab[c] * length, length, np.float32(cx + steps[k] + _H), px[k, c], np.float32(1))
                _profile(tables, psf_tab[c] * length, length, np.float32(cy + steps[k] + _H), py[k, c], np.float32(1))
                sxx = np.float32(0); syy = np.float32(0)
                for u in range(WINDOW):
                    sxx += px[k, c, u] ** 2
                    syy += py[k, c, u] ** 2
                nx[k, c] = 1.0 / math.sqrt(sxx)       # matched-filter norms, inverted once
                ny[k, c] = 1.0 / math.sqrt(syy)
                for yy in range(WINDOW):
                    t = np.float32(0)
                    for xx in range(WINDOW):
                        t += win[c, yy, xx] * px[k, c, xx]
                    a[c, k, yy] = t
        best, best_j, best_k = -np.inf, 0, 0
        for j in range(K_):
            for k in range(K_):
                score = 0.0
                for c in range(C):
                    num = np.float32(0)
                    for yy in range(WINDOW):
                        num += py[j, c, yy] * a[c, k, yy]
                    g = num * ny[j, c] * nx[k, c] / max(noise[c], 1e-6)
                    score += g * abs(g)
                if score > best:
                    best, best_j, best_k = score, j, k
        cy += steps[best_j]
        cx += steps[best_k]
    for c in range(C):                    # PSF-fit flux, S/N and reduced chi-square
        # separable model p = my x mx: sums of p^2 and p * data, then the residual
        # sum of squares sum(d^2) - 2 f sum(p d) + f^2 sum(p^2)
        _profile(tables, psf_tab[c] * length, length, np.float32(cx + _H), mx, np.float32(1))
        _profile(tables, psf_tab[c] * length, length, np.float32(cy + _H), my, np.float32(1))
        sxx = syy = sw = dd = 0.0
        for u in range(WINDOW):
            sxx += mx[u] * mx[u]
            syy += my[u] * my[u]
        for yy in range(WINDOW):
            t = 0.0
            for xx in range(WINDOW):
                v = win[c, yy, xx]
                t += v * mx[xx]
                dd += v * v
            sw += my[yy] * t
        s2 = sxx * syy
        f = sw / s2
        nz = max(noise[c], 1e-6)
        res[2 + 3 * c] = f
        res[3 + 3 * c] = f * math.sqrt(s2) / nz
        res[4 + 3 * c] = max(dd - 2 * f * sw + f * f * s2, 0.0) / nz**2 / (WINDOW * WINDOW - 1)
    res[0] = ix + cx
    res[1] = iy + cy
    return res


@njit(inline="always")
def _store(res, out, i):
    """Write ``_measure_one``'s result into row i of out = (x, y, flux, snr, chi2)."""
    out[0][i], out[1][i] = res[0], res[1]
    for c in range(out[2].shape[1]):
        out[2][i, c], out[3][i, c], out[4][i, c] = res[2 + 3 * c], res[3 + 3 * c], res[4 + 3 * c]


@njit(inline="always")
def _scratch(C, K):
    """Work arrays for ``_measure_one`` with C channels and a K x K refinement grid."""
    return (np.empty((C, WINDOW, WINDOW), np.float32), np.empty((WINDOW, WINDOW), np.float32),
            np.empty(WINDOW), np.empty(WINDOW), np.empty((K, C, WINDOW), np.float32),
            np.empty((K, C, WINDOW), np.float32), np.empty((K, C), np.float32), np.empty((K, C), np.float32),
            np.empty((C, K, WINDOW), np.float32), np.empty(WINDOW, np.float32), np.empty(WINDOW, np.float32),
            np.empty(2 + 3 * C))


@njit(cache=True, fastmath=FAST)
def measure(img, rows, x0, y0, sky, noise, psf):
    """Centroid and PSF-fit photometry near (x0, y0) in images ``rows``; see ``render.measure``."""
    M = rows.shape[0]
    C = img.shape[1]
    out = (np.empty(M), np.empty(M), np.empty((M, C)), np.empty((M, C)), np.empty((M, C)))
    scratch = _scratch(C, psf.steps.shape[0])
    inv2s2, step2 = _centroid_weight(psf.sigma_mean)
    for i in range(M):
        _store(_measure_one(img[rows[i]], x0[i], y0[i], sky[i], noise[i], psf.tables, psf.length, psf.psf_tab,
                            inv2s2, step2, psf.iters, psf.steps, scratch), out, i)
    return out


# ------------------------------------------------------------------ cutouts
@njit(cache=True)
def cutouts(img, rows, r0, c0, size):
    """The size x size windows img[rows[i], :, r0[i]:, c0[i]:] as a new [len(rows), C, size, size]
    array (in about half the time of NumPy's fancy index into a sliding-window view)."""
    C = img.shape[1]
    out = np.empty((rows.shape[0], C, size, size), img.dtype)
    for i in range(rows.shape[0]):
        for c in range(C):
            for y in range(size):
                for x in range(size):
                    out[i, c, y, x] = img[rows[i], c, r0[i] + y, c0[i] + x]
    return out
