"""An instrument's photometry in the rendered images' units (DN): zero points, the PSF's width in
pixels, and the noise that puts a point source at the published depth at S/N 5."""

from __future__ import annotations

import numpy as np

from neoqa.simulate import render
from neoqa.simulate.instruments import Instrument


class Frame:
    """Per-band photometric constants of an instrument (DN units)."""

    def __init__(self, inst: Instrument):
        self.inst = inst
        self.sigma_px = np.array(inst.fwhm_arcsec) / inst.pixel_scale_arcsec * render.FWHM_TO_SIGMA
        self.sum_sq = np.array([render.psf_sum_sq(s) for s in self.sigma_px])
        self.zp = np.array(inst.magzp)

    def jy_to_dn(self, flux_jy):
        return flux_jy / np.array(self.inst.zero_point_jy) * 10 ** (0.4 * self.zp)

    def flux_noise_dn(self, depth_mag):
        """PSF-fit flux error (DN) for a 5-sigma depth (mag)."""
        return 10 ** (-0.4 * (depth_mag - self.zp)) / 5.0

    def pixel_noise(self, depth_mag):
        return self.flux_noise_dn(depth_mag) * np.sqrt(self.sum_sq)
