"""Positions on the sky and the Earth around the Sun: vectorised J2000 geometry (AU, days).

Shared by the simulator (which places its fields and objects with it) and ingest (which measures a
team's sheets with it, ``data.motion``), so a scalar means the same on both. Accurate to well under
a cutout's scale; tested against astropy (the Earth, galactic latitude) in
tests/simulate/test_physics.py.
"""

from __future__ import annotations

import numpy as np

MJD_TO_JD = 2400000.5
OBLIQUITY = np.deg2rad(23.4392911)      # J2000 mean obliquity

# ICRS (~J2000 equatorial) to galactic rotation (Hipparcos definition, as in astropy).
_EQ_TO_GAL = np.array([
    [-0.0548755604162154, -0.8734370902348850, -0.4838350155487132],
    [+0.4941094278755837, -0.4448296299600112, +0.7469822444972189],
    [-0.8676661490190047, -0.1980763734312015, +0.4559837761750669],
])


def earth_position(mjd) -> np.ndarray:
    """Heliocentric ecliptic position of the Earth (low-precision solar theory, ~1e-4 AU)."""
    d = np.asarray(mjd, dtype=np.float64) + MJD_TO_JD - 2451545.0
    g = np.deg2rad(357.529 + 0.98560028 * d)
    q = 280.459 + 0.98564736 * d
    # Apparent solar longitude of date, less precession (to J2000) and aberration (to geometric).
    lon = np.deg2rad(q + 1.915 * np.sin(g) + 0.020 * np.sin(2 * g) - 1.3969713 * d / 36525.0 + 0.00569)
    r = 1.00014 - 0.01671 * np.cos(g) - 0.00014 * np.cos(2 * g)
    return np.stack([-r * np.cos(lon), -r * np.sin(lon), np.zeros_like(r)], axis=-1)


def ecliptic_to_equatorial(v: np.ndarray) -> np.ndarray:
    c, s = np.cos(OBLIQUITY), np.sin(OBLIQUITY)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([x, c * y - s * z, s * y + c * z], axis=-1)


def equatorial_to_ecliptic(v: np.ndarray) -> np.ndarray:
    c, s = np.cos(OBLIQUITY), np.sin(OBLIQUITY)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    return np.stack([x, c * y + s * z, -s * y + c * z], axis=-1)


def unit_to_lonlat(v: np.ndarray):
    """Unit vectors to (longitude, latitude) in degrees, longitude in [0, 360)."""
    lon = np.rad2deg(np.arctan2(v[..., 1], v[..., 0])) % 360.0
    lat = np.rad2deg(np.arcsin(np.clip(v[..., 2], -1.0, 1.0)))
    return lon, lat


def lonlat_to_unit(lon_deg, lat_deg) -> np.ndarray:
    lon, lat = np.deg2rad(lon_deg), np.deg2rad(lat_deg)
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], axis=-1)


def galactic_latitude(eq_unit: np.ndarray) -> np.ndarray:
    return unit_to_lonlat(eq_unit @ _EQ_TO_GAL.T)[1]


def solar_elongation(ecl_unit: np.ndarray, mjd) -> np.ndarray:
    """Degrees between a direction (ecliptic unit vectors) and the Sun seen from the Earth at ``mjd``."""
    sun = -earth_position(mjd)
    sun /= np.linalg.norm(sun, axis=-1, keepdims=True)
    return np.rad2deg(np.arccos(np.clip(np.sum(sun * ecl_unit, -1), -1, 1)))


def tangent_basis(center_eq: np.ndarray):
    """East and north unit vectors at a sky position (equatorial)."""
    z = np.broadcast_to([0.0, 0.0, 1.0], center_eq.shape)
    east = np.cross(z, center_eq)
    east /= np.linalg.norm(east, axis=-1, keepdims=True)
    north = np.cross(center_eq, east)
    return east, north


def project(dirs_eq: np.ndarray, center_eq: np.ndarray, scale_arcsec: float):
    """Gnomonic projection of directions ``[..., n, 3]`` about ``center_eq [..., 3]`` to
    pixels: x grows to the west (east to the left, as on the sky), y to the north."""
    east, north = tangent_basis(center_eq)
    c = center_eq[..., None, :]
    w = np.sum(dirs_eq * c, axis=-1)
    xi = np.sum(dirs_eq * east[..., None, :], axis=-1) / w
    eta = np.sum(dirs_eq * north[..., None, :], axis=-1) / w
    k = np.rad2deg(1.0) * 3600.0 / scale_arcsec
    return -xi * k, eta * k


def deproject(x, y, center_eq: np.ndarray, scale_arcsec: float) -> np.ndarray:
    """Inverse of ``project``: pixels to equatorial unit vectors."""
    east, north = tangent_basis(center_eq)
    k = np.deg2rad(scale_arcsec / 3600.0)
    xi, eta = -np.asarray(x) * k, np.asarray(y) * k
    v = center_eq + xi[..., None] * east + eta[..., None] * north
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def cutout_wcs(fields):
    """A cutout's world coordinates (``data.sheets.WCS_FIELDS``) as an astropy WCS of its two pixel
    axes (0-based pixels in astropy's ``*_values`` calls, as FITS pixels less one)."""
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.cunit = ["deg", "deg"]
    w.wcs.radesys = "ICRS"
    w.wcs.crval = np.asarray(fields[:2], np.float64)
    w.wcs.crpix = np.asarray(fields[2:4], np.float64)
    w.wcs.cd = np.reshape(np.asarray(fields[4:8], np.float64), (2, 2))
    return w


def nearest(ra, dec, cat_ra, cat_dec, radius_arcsec: float) -> tuple[np.ndarray, np.ndarray]:
    """For each position (degrees), the nearest catalogue entry within ``radius_arcsec``: its
    separation in arcseconds (NaN where none) and its index (-1 where none). A k-d tree over unit
    vectors, so the poles and RA's wrap need no care."""
    from scipy.spatial import cKDTree

    here = lonlat_to_unit(np.asarray(ra, np.float64), np.asarray(dec, np.float64)).reshape(-1, 3)
    if len(cat_ra) == 0:
        return np.full(len(here), np.nan), np.full(len(here), -1)
    tree = cKDTree(lonlat_to_unit(np.asarray(cat_ra, np.float64), np.asarray(cat_dec, np.float64)).reshape(-1, 3))
    chord, idx = tree.query(here, k=1, distance_upper_bound=2 * np.sin(np.deg2rad(radius_arcsec / 3600) / 2))
    found = np.isfinite(chord)
    sep = np.rad2deg(2 * np.arcsin(np.minimum(np.where(found, chord, 0) / 2, 1))) * 3600
    return np.where(found, sep, np.nan), np.where(found, idx, -1)

