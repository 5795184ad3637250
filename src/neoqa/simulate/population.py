"""Who is on a sight line: NEOs and main-belt asteroids drawn from published size (or H) and albedo
distributions, placed by the population's spatial density, kept when detectable.

An object candidate's class (NEO or main belt) is a documented setting (``SimConfig.neo_fraction``);
everything else follows from the sources. For each candidate the sight line gets many tries of an
orbit of its class (``orbits.place_on_sightline``: position and the density weight w_geom); a
first resampling by w_geom leaves a few tries distributed as the population along the line; each
then gets an albedo and beaming, the NEATM flux of a 1 km body there, and from the instrument's
noise the smallest detectable diameter D_det (the expected single-exposure S/N in the brighter
band reaches ``min_snr``: flux scales as D^2). The candidate's object is the try chosen in
proportion to the share of its size distribution above D_det, and its size is drawn from that
distribution above D_det. So the kept objects are the population's detectable members, weighted by
how many of them there are: nearby small NEOs outnumber distant giants as in the sky, and no size is
ever solved from a wanted S/N. (Sampling-importance-resampling; tested against a brute-force
population in tests/test_physics.py.) Sources and settings: docs/simulator.md, "Moving objects".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from neoqa.simulate import orbits, thermal

LN10 = np.log(10.0)
MBA, NEO = 1, 2


@dataclass(frozen=True)
class PiecewiseExponential:
    """Counts N(< u) rising as exp(rate_j u) on each segment [edges[j], edges[j+1]], continuous.

    Both size laws are this shape in a suitable variable: a cumulative size distribution
    N(> D) ~ D^-s is N(< u) ~ exp(s u) in u = -ln D, and an H distribution N(< H) ~ 10^(alpha H) is
    exp(alpha ln10 H) in u = H. ``cdf`` and ``sample_below`` are exact (inverse transform)."""

    edges: tuple
    rates: tuple

    def _log_counts(self):
        e, k = np.asarray(self.edges, float), np.asarray(self.rates, float)
        return np.concatenate([[0.0], np.cumsum(k * np.diff(e))])    # ln N at each edge, N(edge0) = 1

    def _count(self, u):
        e, k = np.asarray(self.edges, float), np.asarray(self.rates, float)
        u = np.clip(u, e[0], e[-1])
        j = np.clip(np.searchsorted(e, u, side="right") - 1, 0, len(k) - 1)
        return np.exp(self._log_counts()[j] + k[j] * (u - e[j]))

    def cdf(self, u):
        """Share of the population with variable below ``u``."""
        lo, hi = self._count(self.edges[0]), self._count(self.edges[-1])
        return (self._count(u) - lo) / (hi - lo)

    def sample_below(self, rng, u_max):
        """One draw per entry of ``u_max`` from the distribution truncated to u <= u_max."""
        e, k = np.asarray(self.edges, float), np.asarray(self.rates, float)
        lo = self._count(e[0])
        target = lo + rng.random(np.shape(u_max)) * (self._count(u_max) - lo)
        ln_edges = self._log_counts()
        j = np.clip(np.searchsorted(ln_edges, np.log(target), side="right") - 1, 0, len(k) - 1)
        return e[j] + (np.log(target) - ln_edges[j]) / k[j]


# NEO diameters (km): N(> D) ~ D^-1.32 below 1.5 km (Mainzer et al. 2011, ApJ 743, 156: NEOWISE's
# debiased near-Earth asteroids, slope 1.32 +- 0.14); above the break D^-2.5, the collisional
# equilibrium slope (Dohnanyi 1969; SETTING: the retrieved text of M11 gives no upper slope).
# Bounds 10 m - 40 km (SETTING; NEOWISE detects tens-of-metre NEOs only within a few lunar distances,
# Mainzer et al. 2014).
NEO_SIZES = PiecewiseExponential(edges=(-np.log(40.0), -np.log(1.5), -np.log(0.01)), rates=(2.5, 1.32))
# Main-belt absolute magnitudes: N(< H) ~ 10^(0.51 H) for H 11-15 and 10^(0.38 H) fainter (Gladman et
# al. 2009, Icarus 202, 104: SKADS, alpha 0.51 over H 11-15 from the known belt, 0.38 to H_R 17.1,
# extended here to H 22; SETTING beyond 17.1). Brighter than 8, not drawn (SETTING).
MBA_H = PiecewiseExponential(edges=(8.0, 15.0, 22.0), rates=(0.51 * LN10, 0.38 * LN10))


def draw_albedo(rng, cls):
    """Visible geometric albedo per object. NEOs: the sum of two Rayleigh distributions of scales
    0.03 and 0.17 (Nesvorny et al. 2024, NEOMOD3), the dark one weighted 0.1 so that ~20% lie below
    0.09 (Bottke et al. 2002's debiased NEO albedos, via Morbidelli's ESA summary). Main belt:
    log-normal about 0.08 with sigma 0.6 in ln (SETTING; Masiero et al. 2011 find the belt dark on
    the whole with a bright S-type mode)."""
    n = len(cls)
    dark = rng.random(n) < 0.1
    neo = rng.rayleigh(np.where(dark, 0.03, 0.17))
    mba = np.exp(rng.normal(np.log(0.08), 0.6, n))
    return np.where(cls == NEO, neo, mba).clip(0.01, 0.8)


def draw_beaming(rng, cls):
    """NEATM beaming parameter: 1.0 +- 0.15 (main belt), 1.4 +- 0.3 (NEOs, hotter-looking at high
    phase) (SETTINGS, in the range Mainzer et al. 2011 fit)."""
    n = len(cls)
    return np.where(cls == NEO, rng.normal(1.4, 0.3, n), rng.normal(1.0, 0.15, n)).clip(0.7, 2.8)


def detectable_share(cls, d_det, pv):
    """Share of the class's size distribution at least ``d_det`` km across (at albedo ``pv``)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        neo = NEO_SIZES.cdf(-np.log(d_det))
        mba = MBA_H.cdf(5 * np.log10(thermal.C_HG / (d_det * np.sqrt(pv))))
    return np.where(np.isfinite(d_det), np.where(cls == NEO, neo, mba), 0.0)


def draw_diameter(rng, cls, d_det, pv):
    """Diameters (km) from each class's size law, truncated to at least ``d_det``."""
    neo = np.exp(-NEO_SIZES.sample_below(rng, -np.log(d_det)))
    h = MBA_H.sample_below(rng, 5 * np.log10(thermal.C_HG / (d_det * np.sqrt(pv))))
    return np.where(cls == NEO, neo, thermal.C_HG / np.sqrt(pv) * 10 ** (-h / 5))


def resample(rng, weight, tries):
    """Per group of ``tries`` consecutive rows, the index of one row drawn in proportion to weight
    (-1 where a group has no weight)."""
    w = weight.reshape(-1, tries)
    c = np.cumsum(w, axis=1)
    total = c[:, -1]
    pick = np.argmax(c >= (rng.random(len(total)) * total)[:, None], axis=1)
    return np.where(total > 0, np.arange(len(total)) * tries + pick, -1)


def draw_objects(rng, inst, frame, cls, observer, direction, min_snr, geometry_tries=24, size_tries=6,
                 rounds=4):
    """One object per sight line, of class ``cls`` [m] (MBA or NEO), or none where no detectable
    member of the class lies on it after ``rounds`` rounds of tries.

    Returns arrays [m]: ok, pos, vel (mid-time, heliocentric ecliptic AU and AU/day), delta, the
    albedo, beaming, diameter, the 1-km flux density per band (Jy) and the expected S/N."""
    m = len(cls)
    out = {"ok": np.zeros(m, bool), "pos": np.tile([2.5, 0.0, 0.0], (m, 1)),
           "vel": np.tile([0.0, np.sqrt(orbits.GM_SUN / 2.5), 0.0], (m, 1)), "delta": np.full(m, 1.5),
           "pv": np.full(m, np.nan), "beaming": np.full(m, np.nan), "diameter": np.full(m, np.nan),
           "flux1_jy": np.zeros((m, len(inst.wavelength_nm))), "snr": np.full(m, np.nan)}
    noise_dn = frame.flux_noise_dn(np.array(inst.depth_5sigma_mag))
    todo = np.arange(m)
    for _ in range(rounds):
        if len(todo) == 0:
            break
        # Stage 1: many cheap geometric tries, resampled by the density weight.
        rep = np.repeat(todo, geometry_tries)
        a, e, i_scale = np.empty(len(rep)), np.empty(len(rep)), np.empty(len(rep))
        for code, pop in ((MBA, "mba"), (NEO, "neo")):
            sel = cls[rep] == code
            a[sel], e[sel], i_scale[sel] = orbits.sample_elements(rng, int(sel.sum()), pop)
        pos, vel, delta, w = orbits.place_on_sightline(rng, observer[rep], direction[rep], a, e, i_scale)
        group = np.repeat(np.arange(len(todo)), size_tries)
        picks = np.stack([resample(rng, w, geometry_tries) for _ in range(size_tries)], 1).reshape(-1)
        live = picks >= 0
        group, picks = group[live], picks[live]
        # Stage 2: physical properties and detectability of the resampled tries.
        c = cls[todo][group]
        pv, eta = draw_albedo(rng, c), draw_beaming(rng, c)
        obs = observer[todo][group]
        f1 = thermal.neatm_flux(pos[picks], obs, np.ones(len(picks)), pv, np.stack([1.6 * pv] * 2, -1),
                                inst.wavelength_nm, beaming=eta)
        snr1 = (frame.jy_to_dn(f1) / noise_dn).max(-1)
        d_det = np.sqrt(min_snr / snr1)
        share = detectable_share(c, d_det, pv)
        full = np.zeros(len(todo) * size_tries)
        full[np.flatnonzero(live)] = share
        chosen = resample(rng, full, size_tries)
        found = chosen >= 0
        # Map each found group's chosen slot to its stage-2 row.
        slot_row = np.full(len(todo) * size_tries, -1)
        slot_row[np.flatnonzero(live)] = np.arange(len(picks))
        row = slot_row[chosen[found]]
        rows = todo[found]
        diameter = draw_diameter(rng, c[row], d_det[row], pv[row])
        out["ok"][rows] = True
        out["pos"][rows], out["vel"][rows], out["delta"][rows] = pos[picks[row]], vel[picks[row]], delta[picks[row]]
        out["pv"][rows], out["beaming"][rows], out["diameter"][rows] = pv[row], eta[row], diameter
        out["flux1_jy"][rows] = f1[row]
        out["snr"][rows] = snr1[row] * diameter**2
        todo = todo[~found]
    return out
