"""A sheet's motion and place, measured from its observations' times and sky positions.

``fit_tracklets`` is the simulator's linker fit (least-squares lines x(t), y(t) in a tangent
plane); ``geometry_scalars`` measures with it, and with ``data.sky``, the scalars a team's sheets
may lack (ingest computes those the tables do not hold): each observation's ``dt_hr`` and
``fit_offset_arcsec``, each sheet's ``rate_deg_per_day``, ``position_angle_deg`` (east of north),
``ecliptic_lat_deg``, ``galactic_lat_deg`` and ``solar_elongation_deg``.

The simulator fits in its field's tangent plane and places a sheet by its field's pointing and
mid-time; here the tangent point is the sheet's own mean direction and its time the observations'
mean, so the two agree to the projection's distortion and the field's size (measured in
tests/ingest/test_derived.py: docs/own-data.md gives the numbers).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from neoqa.data import sky


@njit(cache=True)
def fit_tracklets(offsets, t, x, y, linked, drop_above, passes):
    """Least-squares lines x(t), y(t) per candidate over its linked detections, dropping
    the worst detection while its offset from the line exceeds ``drop_above``, at most
    ``passes`` times, then fitting again.

    Candidate i owns rows offsets[i]:offsets[i + 1] of the flat arrays t, x, y, linked
    (``linked`` is updated in place). Returns the line's x and y at every row and each
    candidate's velocity (vx, vy).
    """
    n = offsets.shape[0] - 1
    pred_x = np.empty(t.shape[0])
    pred_y = np.empty(t.shape[0])
    vx = np.zeros(n)
    vy = np.zeros(n)
    for i in range(n):
        a, b = offsets[i], offsets[i + 1]
        for p in range(passes + 1):
            sw = st = sx = sy = 0.0
            for j in range(a, b):
                if linked[j]:
                    sw += 1
                    st += t[j]
                    sx += x[j]
                    sy += y[j]
            sw = max(sw, 1.0)
            tm, xm, ym = st / sw, sx / sw, sy / sw
            stt = sxt = syt = 0.0
            for j in range(a, b):
                if linked[j]:
                    dt = t[j] - tm
                    stt += dt * dt
                    sxt += dt * (x[j] - xm)
                    syt += dt * (y[j] - ym)
            stt = max(stt, 1e-12)
            vx[i], vy[i] = sxt / stt, syt / stt
            worst, worst_res = -1, -1.0
            for j in range(a, b):
                pred_x[j] = xm + vx[i] * (t[j] - tm)
                pred_y[j] = ym + vy[i] * (t[j] - tm)
                if linked[j]:
                    res = math.hypot(x[j] - pred_x[j], y[j] - pred_y[j])
                    if res > worst_res:
                        worst, worst_res = j, res
            if p == passes or worst_res <= drop_above:
                break
            linked[worst] = False
    return pred_x, pred_y, vx, vy


def position_angle(vx, vy) -> np.ndarray:
    """Degrees east of north of a motion (vx to the west, vy to the north, as ``sky.project``)."""
    return np.rad2deg(np.arctan2(-np.asarray(vx), np.asarray(vy))) % 360.0


def geometry_scalars(mjd, ra, dec, k) -> tuple[dict, dict]:
    """(observation scalars, sheet scalars) measured from flat per-observation ``mjd``, ``ra``,
    ``dec`` (degrees) of sheets of ``k`` observations each: a straight line fitted to every sheet's
    positions over time in the tangent plane at its mean direction, its residuals, and where the
    sheet lies."""
    k = np.asarray(k, np.int64)
    offsets = np.concatenate([[0], np.cumsum(k)])
    sheet_of = np.repeat(np.arange(len(k)), k)
    mjd = np.asarray(mjd, np.float64)
    t0 = np.minimum.reduceat(mjd, offsets[:-1])
    dt = mjd - t0[sheet_of]                                            # days since the sheet's first
    dirs = sky.lonlat_to_unit(np.asarray(ra, np.float64), np.asarray(dec, np.float64))
    centre = np.add.reduceat(dirs, offsets[:-1], axis=0)
    centre /= np.linalg.norm(centre, axis=-1, keepdims=True)
    x, y = sky.project(dirs[:, None, :], centre[sheet_of], 1.0)        # arcsec
    pred_x, pred_y, vx, vy = fit_tracklets(offsets, dt, x[:, 0], y[:, 0], np.ones(len(mjd), np.bool_), np.inf, 0)
    mid = np.add.reduceat(mjd, offsets[:-1]) / k
    obs = {"dt_hr": dt * 24.0, "fit_offset_arcsec": np.hypot(x[:, 0] - pred_x, y[:, 0] - pred_y)}
    ecl = sky.equatorial_to_ecliptic(centre)
    sheet = {"rate_deg_per_day": np.hypot(vx, vy) / 3600.0, "position_angle_deg": position_angle(vx, vy),
             "ecliptic_lat_deg": sky.unit_to_lonlat(ecl)[1], "galactic_lat_deg": sky.galactic_latitude(centre),
             "solar_elongation_deg": sky.solar_elongation(ecl, mid)}
    return obs, sheet
