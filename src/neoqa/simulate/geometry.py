"""The simulator's solar-system geometry in the J2000 ecliptic frame (AU, days): where its
observatories are. Positions on the sky and the Earth's orbit are ``data.sky`` (shared with
ingest), imported here so the simulator reads them as ``geo.<name>``.

Accurate to well under the cutout scale for the simulator's purposes and tested
against astropy (Earth) and kete (propagation) in tests/test_physics.py.
"""

from __future__ import annotations

import numpy as np

from neoqa.data.sky import (MJD_TO_JD, OBLIQUITY, deproject, earth_position, ecliptic_to_equatorial,
                            equatorial_to_ecliptic, galactic_latitude, lonlat_to_unit, project, solar_elongation,
                            tangent_basis, unit_to_lonlat)

__all__ = ["MJD_TO_JD", "OBLIQUITY", "AU_KM", "C_AU_PER_DAY", "WISE_ORBIT_RADIUS_AU", "WISE_ORBIT_PERIOD_DAY",
           "L1_DISTANCE_AU", "deproject", "earth_position", "ecliptic_to_equatorial", "equatorial_to_ecliptic",
           "galactic_latitude", "lonlat_to_unit", "observer_position", "project", "solar_elongation",
           "tangent_basis", "unit_to_lonlat"]

AU_KM = 1.495978707e8
C_AU_PER_DAY = 173.1446326846693
WISE_ORBIT_RADIUS_AU = (6378.0 + 525.0) / AU_KM   # terminator orbit ~525 km (EW)
WISE_ORBIT_PERIOD_DAY = 94.7 / 1440.0             # EW
L1_DISTANCE_AU = 0.01                              # Sun-Earth L1, 1.5e6 km sunward (B20)


def observer_position(kind: str, mjd, phase0=0.0) -> np.ndarray:
    """Heliocentric position of the observatory.

    ``wise``: Earth plus WISE's polar terminator orbit, whose plane is normal to the
    Sun-Earth line (EW); this gives near-Earth objects their real orbital parallax.
    ``l1``: NEO Surveyor at Sun-Earth L1, 0.01 AU sunward of the Earth (B20).
    """
    earth = earth_position(mjd)
    if kind == "l1":
        return earth * (1.0 - L1_DISTANCE_AU / np.linalg.norm(earth, axis=-1, keepdims=True))
    if kind != "wise":
        raise ValueError(kind)
    s = -earth / np.linalg.norm(earth, axis=-1, keepdims=True)   # toward the Sun
    z = np.broadcast_to([0.0, 0.0, 1.0], s.shape)
    e1 = np.cross(z, s)
    e1 /= np.linalg.norm(e1, axis=-1, keepdims=True)
    phi = 2 * np.pi * np.asarray(mjd) / WISE_ORBIT_PERIOD_DAY + phase0
    return earth + WISE_ORBIT_RADIUS_AU * (np.cos(phi)[..., None] * z + np.sin(phi)[..., None] * e1)
