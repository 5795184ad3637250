"""Orbital populations placed on a line of sight, and two-body propagation (compiled, one object at a time)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

GM_SUN = 2.9591220828559093e-4   # AU^3 / day^2

# SETTING: simplified population models (not in the sources note). Main belt:
# a in 2.1-3.3 AU, Rayleigh e and i. Near-Earth: perihelion q < 1.3 AU.
POPULATIONS = {
    "mba": {"a": (2.1, 3.3), "e_scale": 0.09, "e_max": 0.35, "i_scale_deg": 7.0},
    "neo": {"a": (0.9, 3.0), "q_max": 1.3, "e_max": 0.85, "i_scale_deg": 13.0},
}


@njit(inline="always")
def solve_kepler(M, e):
    """Eccentric anomaly from mean anomaly (Newton; Danby's start for high e).

    Six iterations reach machine precision for e <= 0.85 (the populations' largest); eight
    leave a margin."""
    E = M if e < 0.8 else M + 0.85 * e * np.sign(math.sin(M))
    for _ in range(8):
        step = (E - e * math.sin(E) - M) / (1.0 - e * math.cos(E))
        E -= step
        if abs(step) < 1e-15:              # converged (Newton doubles the digits each step)
            break
    return E


def propagate(pos, vel, dt):
    """Two-body (Sun) propagation of bound orbits by ``dt`` days with f and g functions.

    pos, vel: [..., 3]; dt broadcastable to pos[..., 0]. Returns positions [..., 3].
    """
    pos, vel = np.broadcast_arrays(np.asarray(pos, np.float64), np.asarray(vel, np.float64))
    shape = pos.shape
    dt = np.broadcast_to(np.asarray(dt, np.float64), shape[:-1])
    out, bound = _propagate(np.ascontiguousarray(pos.reshape(-1, 3)), np.ascontiguousarray(vel.reshape(-1, 3)),
                            np.ascontiguousarray(dt.reshape(-1)))
    if not bound:
        raise ValueError("propagate() handles bound orbits only")
    return out.reshape(shape)


@njit(cache=True)
def _propagate(pos, vel, dt):
    """``propagate`` one object at a time: Kepler's equation in the eccentric-anomaly change
    dE by Newton (|dE| is small over a few days: it converges in about 4 steps)."""
    out = np.empty_like(pos)
    for i in range(pos.shape[0]):
        p, v = pos[i], vel[i]
        r0 = math.sqrt(p[0] * p[0] + p[1] * p[1] + p[2] * p[2])
        v2 = v[0] * v[0] + v[1] * v[1] + v[2] * v[2]
        a = 1.0 / (2.0 / r0 - v2 / GM_SUN)
        if a <= 0:
            return out, False
        n = math.sqrt(GM_SUN / a**3)
        sig = (p[0] * v[0] + p[1] * v[1] + p[2] * v[2]) / math.sqrt(GM_SUN) / math.sqrt(a)
        ecc = 1 - r0 / a
        ndt = n * dt[i]
        dE = ndt
        for _ in range(8):
            s, c = math.sin(dE), math.cos(dE)
            step = (dE + sig * (1 - c) - ecc * s - ndt) / (1 + sig * s - ecc * c)
            dE -= step
            if abs(step) < 1e-15:
                break
        f = 1 - a / r0 * (1 - math.cos(dE))
        g = dt[i] - (dE - math.sin(dE)) / n
        for j in range(3):
            out[i, j] = f * p[j] + g * v[j]
    return out, True


def sample_elements(rng, n, population):
    """Draw (a, e) for ``n`` objects of a population, and the scale of its Rayleigh inclinations
    (radians; ``place_on_sightline`` draws i itself, given the latitude it must reach)."""
    p = POPULATIONS[population]
    a = rng.uniform(*p["a"], n)
    if population == "mba":
        e = np.minimum(rng.rayleigh(p["e_scale"], n), p["e_max"])
    else:
        e_min = np.clip(1.0 - p["q_max"] / a, 0.0, None)
        e = rng.uniform(e_min, np.maximum(e_min + 1e-3, p["e_max"]))
    return a, e, np.full(n, np.deg2rad(p["i_scale_deg"]))


def place_on_sightline(rng, observer, direction, a, e, i_scale):
    """Put an object of elements (a, e) and Rayleigh(i_scale) inclination (at most 80 deg) on the
    line of sight, with its importance weight.

    The proposal: the mean anomaly is uniform (objects spend time evenly in M), which fixes the
    heliocentric distance r; the object sits where the sight line reaches r (the near or far
    crossing at random, the far one where the near one is behind the observer). The orbit plane
    is then tilted through that point: it needs i >= |heliocentric latitude beta|, so i is drawn from the
    population's inclinations above |beta| and the weight carries their share P(i > |beta|); the
    motion is prograde with a random ascending/descending sign.

    The weight makes the proposal a draw from the population's spatial density n(r, beta) along
    the sight line, per unit distance s and solid angle (s^2 n). For an orbit of elements
    (a, e, i) with random node, perihelion and mean anomaly, n = p(r) p(beta | i) / (2 pi r^2
    cos beta), with p(beta | i) = cos beta / (pi sqrt(sin^2 i - sin^2 beta)); the proposal's
    density in s is p(r) |dr/ds| times the crossing's probability. Their ratio,
        w = s^2 / (2 pi^2 r^2 |dr/ds| sqrt(sin^2 i - sin^2 beta) c),  |dr/ds| = |s + o.d| / r,
    times P(i > |beta|), is what this returns (0 where no geometry exists); p(r) cancels, so no singularity at
    perihelion or aphelion remains, and those left (grazing the r sphere; beta near i) are
    integrable. Tested against a brute-force population in a cone (tests/test_physics.py).

    Returns (pos, vel, delta, weight), one row per input row.
    """
    n = a.shape[0]
    M = rng.uniform(0, 2 * np.pi, n)
    near = rng.random(n) < 0.5
    ascending = rng.random(n) < 0.5
    u = rng.random(n)
    return _sightline(
        np.ascontiguousarray(observer, np.float64), np.ascontiguousarray(direction, np.float64),
        np.asarray(a, np.float64), np.asarray(e, np.float64), np.asarray(i_scale, np.float64), M, near, ascending, u)


@njit(cache=True)
def _sightline(observer, direction, a, e, i_scale, M, near, ascending, u):
    """``place_on_sightline``'s geometry and weight, one object at a time (NumPy would pay for
    temporaries over [n, 3] at every step)."""
    n = a.shape[0]
    pos = np.zeros((n, 3))
    vel = np.zeros((n, 3))
    delta = np.zeros(n)
    weight = np.zeros(n)
    i_max = math.radians(80.0)
    for i in range(n):
        ei = e[i]
        E = solve_kepler(M[i], ei)
        r = a[i] * (1 - ei * math.cos(E))
        o = observer[i]
        d = direction[i]
        b = o[0] * d[0] + o[1] * d[1] + o[2] * d[2]
        disc = b * b - (o[0] * o[0] + o[1] * o[1] + o[2] * o[2] - r * r)
        if disc <= 0:
            continue
        root = math.sqrt(disc)
        lo = -b - root
        both = lo > 0.02
        dist = lo if (both and near[i]) else -b + root
        if dist <= 0.02:
            continue
        p0, p1, p2 = o[0] + dist * d[0], o[1] + dist * d[1], o[2] + dist * d[2]
        rx, ry, rz = p0 / r, p1 / r, p2 / r
        beta = math.asin(min(max(rz, -1.0), 1.0))
        # i from the Rayleigh truncated to [|beta|, 80 deg] by inverse transform, S(x) = exp(-x^2 / 2 s^2)
        s2 = 2 * i_scale[i] ** 2
        s_lo, s_hi = math.exp(-beta * beta / s2), math.exp(-i_max * i_max / s2)
        share = (s_lo - s_hi) / (1 - s_hi)
        if share <= 0:
            continue
        inc = math.sqrt(-s2 * math.log(s_lo - u[i] * (s_lo - s_hi)))
        gap = math.sin(inc) ** 2 - rz * rz
        if gap <= 1e-12:
            continue
        zeta = math.acos(min(max(math.cos(inc) / math.cos(beta), -1.0), 1.0))
        zeta = zeta if ascending[i] else -zeta
        # local east (z x r_hat, normalised) and north (r_hat x east)
        ex, ey = -ry, rx
        en = math.sqrt(ex * ex + ey * ey)
        ex, ey = ex / en, ey / en
        nx, ny, nz = -rz * ey, rz * ex, rx * ey - ry * ex
        cz, sz = math.cos(zeta), math.sin(zeta)
        tx, ty, tz = cz * ex + sz * nx, cz * ey + sz * ny, sz * nz
        # True anomaly sign sets outbound (v_r > 0) or inbound motion.
        sinf = math.sqrt(1 - ei * ei) * math.sin(E) / (1 - ei * math.cos(E))
        h = math.sqrt(GM_SUN * a[i] * (1 - ei * ei))
        v_r = GM_SUN * ei * sinf / h
        v_t = h / r
        pos[i, 0], pos[i, 1], pos[i, 2] = p0, p1, p2
        vel[i, 0], vel[i, 1], vel[i, 2] = v_r * rx + v_t * tx, v_r * ry + v_t * ty, v_r * rz + v_t * tz
        delta[i] = dist
        # |dr/ds| = root / r; the chosen crossing had probability 1/2 where both lie ahead.
        weight[i] = dist * dist / (2 * math.pi**2 * r * root * math.sqrt(gap)) * (2.0 if both else 1.0) * share
    return pos, vel, delta, weight
