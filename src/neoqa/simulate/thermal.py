"""Vectorised NEATM (Harris 1998) thermal emission plus HG reflected light.

Matches kete's ``neatm_model_flux`` (tested in tests/test_physics.py) while
evaluating thousands of objects at once with a fixed quadrature.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from neoqa.simulate.geometry import AU_KM

SIGMA_SB = 5.670374419e-8     # W m^-2 K^-4
SOLAR_CONSTANT = 1361.0       # W m^-2 at 1 AU
H_PLANCK = 6.62607015e-34
C_LIGHT = 2.99792458e8
K_BOLTZ = 1.380649e-23
C_HG = 1329.0                 # km: D = C / sqrt(pV) 10^(-H/5)
# Solar flux density at 1 AU (Jy), ASTM E-490 as tabulated in kete, at the band wavelengths.
SOLAR_JY_1AU = {3352.6: 6.4179421844454810e13, 4602.8: 3.4746240024179918e13,
                4700.0: 3.3261096915253293e13, 8000.0: 1.2213249207223220e13}

# 8 x 8 Gauss-Legendre nodes over the visible sunlit hemisphere: within 1e-5 of a
# 64 x 64 quadrature for 0.9-3.5 AU and beaming 0.8-2.5, at a tenth of 24 x 24's cost.
_NODES, _WEIGHTS = np.polynomial.legendre.leggauss(8)


def hg_phase(alpha_rad, g=0.15):
    """IAU HG phase function (Bowell et al. 1989), with its small-angle terms."""
    t = np.tan(alpha_rad / 2)
    sa = np.sin(alpha_rad)
    w = np.exp(-90.56 * t * t)
    out = 0.0
    for (a, b, c), weight in (((3.332, 0.631, 0.986), 1 - g), ((1.862, 1.218, 0.238), g)):
        small = 1 - c * sa / (0.119 + 1.341 * sa - 0.754 * sa * sa)
        large = np.exp(-a * t**b)
        out = out + weight * (w * small + (1 - w) * large)
    return out


def neatm_flux(sun2obj, sun2obs, diameter_km, vis_albedo, band_albedo, wavelengths_nm,
               beaming=1.0, emissivity=0.9, g=0.15, parts=False):
    """Total (thermal + reflected) flux density in Jy, shape [n, n_bands].

    The thermal part matches kete's NEATM; the reflected part uses the ASTM E-490
    solar spectrum (kete's ``solar_flux``), whereas kete's HG flux assumes another
    solar spectrum and is 1-18% brighter between 3.4 and 8 um. ``parts=True``
    returns (thermal, reflected) instead of their sum.

    sun2obj, sun2obs: [n, 3] AU. diameter_km, vis_albedo, beaming: [n].
    band_albedo: [n, n_bands] geometric albedo in each band.
    """
    sun2obj = np.ascontiguousarray(sun2obj, np.float64)
    n = sun2obj.shape[0]
    obj2obs = np.asarray(sun2obs, np.float64) - sun2obj
    r = np.linalg.norm(sun2obj, axis=-1)
    delta = np.linalg.norm(obj2obs, axis=-1)
    alpha = np.arccos(np.clip(np.sum(-sun2obj * obj2obs, axis=-1) / (r * delta), -1, 1))
    bond = np.broadcast_to(np.asarray(vis_albedo, np.float64), (n,)) * (0.29 + 0.684 * g)   # phase integral
    eta = np.broadcast_to(np.asarray(beaming, np.float64), (n,))
    t_ss = (SOLAR_CONSTANT * (1 - bond) / (eta * emissivity * SIGMA_SB * r**2)) ** 0.25
    lam = np.asarray(wavelengths_nm, np.float64) * 1e-9
    integral = _thermal_integral(np.ascontiguousarray(t_ss), np.ascontiguousarray(alpha), lam)     # [n, bands]
    scale = (np.broadcast_to(np.asarray(diameter_km, np.float64), (n,)) / 2 / AU_KM) ** 2 / delta**2
    thermal = emissivity * scale[:, None] * integral
    sun_jy = np.array([SOLAR_JY_1AU[w] for w in wavelengths_nm])
    reflected = (sun_jy[None, :] / r[:, None] ** 2) * np.asarray(band_albedo) * (scale * hg_phase(alpha, g))[:, None]
    return (thermal, reflected) if parts else thermal + reflected


@njit(cache=True)
def _thermal_integral(t_ss, alpha, lam):
    """The NEATM's Planck integral (Jy/sr x sr) over the visible, sunlit hemisphere per object and band.

    Quadrature in latitude phi and longitude theta from the sub-solar point; the observer sees
    longitude theta at cos(theta - alpha), so the visible sunlit part is theta in
    [alpha - pi/2, pi/2]. Compiled, as the population draw evaluates it for six tries an object:
    3.6 us an object against NumPy's 4.0 over [n, 8, 8] temporaries (measured side by side)."""
    n, nb = t_ss.shape[0], lam.shape[0]
    out = np.zeros((n, nb))
    q = _NODES.shape[0]
    coef = np.empty(nb)
    hk = np.empty(nb)
    for j in range(nb):
        nu = C_LIGHT / lam[j]
        coef[j] = 2 * H_PLANCK * nu**3 / C_LIGHT**2 * 1e26
        hk[j] = H_PLANCK * nu / K_BOLTZ
    for i in range(n):
        lo = alpha[i] - np.pi / 2
        half = (np.pi / 2 - lo) / 2
        for a in range(q):
            theta = lo + half * (_NODES[a] + 1)
            cos_t = max(math.cos(theta), 0.0)
            wt = half * _WEIGHTS[a] * math.cos(theta - alpha[i])
            for b in range(q):
                phi = (np.pi / 2) * _NODES[b]
                cos_p = math.cos(phi)
                w = wt * (np.pi / 2) * _WEIGHTS[b] * cos_p * cos_p
                T = max(t_ss[i] * (cos_t * cos_p) ** 0.25, 1.0)
                for j in range(nb):
                    out[i, j] += w * coef[j] / math.expm1(min(hk[j] / T, 700.0))
    return out
