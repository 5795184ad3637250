"""Orbital populations placed on a line of sight, and vectorised two-body propagation."""

from __future__ import annotations

import numpy as np

GM_SUN = 2.9591220828559093e-4   # AU^3 / day^2

# SETTING: simplified population models (not in the sources note). Main belt:
# a in 2.1-3.3 AU, Rayleigh e and i. Near-Earth: perihelion q < 1.3 AU.
POPULATIONS = {
    "mba": {"a": (2.1, 3.3), "e_scale": 0.09, "e_max": 0.35, "i_scale_deg": 7.0},
    "neo": {"a": (0.9, 3.0), "q_max": 1.3, "e_max": 0.85, "i_scale_deg": 13.0},
}


def solve_kepler(M, e, iters=8):
    """Eccentric anomaly from mean anomaly (Newton; Danby's start for high e).

    Six iterations reach machine precision for e <= 0.85 (the populations' largest); eight
    leave a margin."""
    E = np.where(e < 0.8, M, M + 0.85 * e * np.sign(np.sin(M)))
    for _ in range(iters):
        E = E - (E - e * np.sin(E) - M) / (1.0 - e * np.cos(E))
    return E


def propagate(pos, vel, dt):
    """Two-body (Sun) propagation of bound orbits by ``dt`` days with f and g functions.

    pos, vel: [..., 3]; dt broadcastable to pos[..., 0]. Returns positions [..., 3].
    """
    r0 = np.linalg.norm(pos, axis=-1)
    v2 = np.sum(vel * vel, axis=-1)
    a = 1.0 / (2.0 / r0 - v2 / GM_SUN)
    if np.any(a <= 0):
        raise ValueError("propagate() handles bound orbits only")
    n = np.sqrt(GM_SUN / a**3)
    sigma = np.sum(pos * vel, axis=-1) / np.sqrt(GM_SUN)
    sa = np.sqrt(a)
    dt = np.asarray(dt, dtype=np.float64)
    ndt = n * dt
    dE = ndt.copy() if np.ndim(ndt) else np.asarray(ndt)
    for _ in range(8):         # |dE| is small over a few days: Newton converges in ~4
        s, c = np.sin(dE), np.cos(dE)
        F = dE + sigma / sa * (1 - c) - (1 - r0 / a) * s - ndt
        dF = 1 + sigma / sa * s - (1 - r0 / a) * c
        dE = dE - F / dF
    f = 1 - a / r0 * (1 - np.cos(dE))
    g = dt - (dE - np.sin(dE)) / n
    return f[..., None] * pos + g[..., None] * vel


def sample_elements(rng, n, population):
    """Draw (a, e, inclination) for ``n`` objects of a population."""
    p = POPULATIONS[population]
    a = rng.uniform(*p["a"], n)
    if population == "mba":
        e = np.minimum(rng.rayleigh(p["e_scale"], n), p["e_max"])
    else:
        e_min = np.clip(1.0 - p["q_max"] / a, 0.0, None)
        e = rng.uniform(e_min, np.maximum(e_min + 1e-3, p["e_max"]))
    inc = np.deg2rad(np.minimum(rng.rayleigh(p["i_scale_deg"], n), 80.0))
    return a, e, inc


def place_on_sightline(rng, observer, direction, a, e, inc):
    """Put an object of elements (a, e, i) at random orbital phase on the line of sight.

    The mean anomaly is uniform (objects spend time evenly in M), which fixes the
    heliocentric distance r; the object sits where the sight line reaches r. The
    orbit plane is then tilted through that point: it needs i >= |heliocentric
    latitude|, and prograde motion with a random ascending/descending sign.
    Returns (pos, vel, delta, ok); rows with ok False have no valid geometry.
    """
    n = a.shape[0]
    M = rng.uniform(0, 2 * np.pi, n)
    E = solve_kepler(M, e)
    r = a * (1 - e * np.cos(E))
    b = np.sum(observer * direction, axis=-1)
    c = np.sum(observer * observer, axis=-1) - r**2
    disc = b * b - c
    root = np.sqrt(np.clip(disc, 0, None))
    near, far = -b - root, -b + root
    use_near = (near > 0) & (rng.random(n) < 0.5)
    delta = np.where(use_near, near, far)
    ok = (disc > 0) & (delta > 0.02)
    pos = observer + delta[:, None] * direction
    rhat = pos / np.linalg.norm(pos, axis=-1, keepdims=True)
    beta = np.arcsin(np.clip(rhat[:, 2], -1, 1))
    ok &= inc > np.abs(beta) + 1e-6
    cos_zeta = np.clip(np.cos(inc) / np.cos(beta), -1, 1)
    zeta = np.arccos(cos_zeta) * np.where(rng.random(n) < 0.5, 1.0, -1.0)
    z = np.broadcast_to([0.0, 0.0, 1.0], rhat.shape)
    east = np.cross(z, rhat)
    east /= np.linalg.norm(east, axis=-1, keepdims=True)
    north = np.cross(rhat, east)
    t_hat = np.cos(zeta)[:, None] * east + np.sin(zeta)[:, None] * north
    # True anomaly sign sets outbound (v_r > 0) or inbound motion.
    sinf = np.sqrt(1 - e**2) * np.sin(E) / (1 - e * np.cos(E))
    h = np.sqrt(GM_SUN * a * (1 - e**2))
    v_r = GM_SUN * e * sinf / h
    v_t = h / r
    vel = v_r[:, None] * rhat + v_t[:, None] * t_hat
    return pos, vel, delta, ok
