"""Vectorised NEATM (Harris 1998) thermal emission plus HG reflected light.

Matches kete's ``neatm_model_flux`` (tested in tests/test_physics.py) while
evaluating thousands of objects at once with a fixed quadrature.
"""

from __future__ import annotations

import numpy as np

from .geometry import AU_KM

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


def planck_jy_per_sr(T, wavelength_nm):
    lam = wavelength_nm * 1e-9
    nu = C_LIGHT / lam
    x = H_PLANCK * nu / (K_BOLTZ * np.maximum(T, 1.0))
    b = 2 * H_PLANCK * nu**3 / C_LIGHT**2 / np.expm1(np.minimum(x, 700.0))
    return b * 1e26


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
    obj2obs = sun2obs - sun2obj
    r = np.linalg.norm(sun2obj, axis=-1)
    delta = np.linalg.norm(obj2obs, axis=-1)
    alpha = np.arccos(np.clip(np.sum(-sun2obj * obj2obs, axis=-1) / (r * delta), -1, 1))
    q = 0.29 + 0.684 * g                       # phase integral
    bond = vis_albedo * q
    t_ss = (SOLAR_CONSTANT * (1 - bond) / (beaming * emissivity * SIGMA_SB * r**2)) ** 0.25
    # Quadrature over the sunlit hemisphere in (latitude phi, longitude theta from the
    # sub-solar point); the observer sees longitude theta at cos(theta - alpha).
    phi = (np.pi / 2) * _NODES                  # [-pi/2, pi/2]
    wphi = (np.pi / 2) * _WEIGHTS
    lo = alpha - np.pi / 2                      # visible and sunlit: theta in [alpha - pi/2, pi/2]
    half = (np.pi / 2 - lo) / 2
    theta = lo[:, None] + half[:, None] * (_NODES[None, :] + 1)           # [n, q]
    wtheta = half[:, None] * _WEIGHTS[None, :]
    cos_t = np.clip(np.cos(theta), 0, None)
    cos_p = np.cos(phi)
    T = t_ss[:, None, None] * (cos_t[:, :, None] * cos_p[None, None, :]) ** 0.25   # [n, q, q]
    geom = (cos_p**2)[None, None, :] * np.cos(theta - alpha[:, None])[:, :, None]
    w = wtheta[:, :, None] * wphi[None, None, :] * geom
    radius_au = diameter_km / 2 / AU_KM
    thermal, reflected = [], []
    for j, lam in enumerate(wavelengths_nm):
        integral = np.sum(planck_jy_per_sr(T, lam) * w, axis=(1, 2))
        thermal.append(emissivity * radius_au**2 / delta**2 * integral)
        reflected.append((SOLAR_JY_1AU[lam] / r**2) * band_albedo[:, j] * radius_au**2 / delta**2 * hg_phase(alpha, g))
    thermal, reflected = np.stack(thermal, axis=-1), np.stack(reflected, axis=-1)
    return (thermal, reflected) if parts else thermal + reflected


def jy_to_mag(flux_jy, zero_point_jy):
    with np.errstate(divide="ignore", invalid="ignore"):
        return -2.5 * np.log10(flux_jy / zero_point_jy)
