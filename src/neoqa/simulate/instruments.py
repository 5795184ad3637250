"""Instrument and survey configurations. Every number cites docs/simulator.md's sources
(ES, W10, EW, K, B20, B21, NWP); unsourced ones are marked SETTING."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Instrument:
    name: str
    code: int                      # enters the seed, so surveys never share random streams
    id_prefix: str
    channels: tuple                # band names
    wavelength_nm: tuple           # effective wavelengths (K)
    zero_point_jy: tuple           # Vega zero points (K)
    pixel_scale_arcsec: float
    fwhm_arcsec: tuple
    depth_5sigma_mag: tuple        # single-exposure point-source 5 sigma, (lo, hi) zodi for NEOS
    depth_5sigma_mag_bright: tuple # the other end of the depth range (== depth for WISE)
    magzp: tuple                   # SETTING: DN zero points of the rendered images
    gain: float                    # SETTING: e-/DN, sets sky level from sky noise
    saturation_mag: tuple          # SETTING (WISE saturates near W1 8, W2 7)
    observer: str                  # "wise" (terminator LEO) or "l1"
    cadence: str                   # "wise" or "neos"
    mjd_range: tuple
    detect_snr: float = 4.5        # WMOPS threshold (ES-NEOWISE IV.3)
    chi2_max: float = 4.0          # reduced chi2 cut unless SNR > chi2_bright_snr (ES-NEOWISE IV.3)
    chi2_bright_snr: float = 15.0
    min_links: int = 5             # tracklets need >= 5 detections (ES-NEOWISE IV.3)
    link_tolerance_px: float = 1.2  # SETTING: linker's positional tolerance
    # Truth matching: 99% of genuine detections at the detection threshold (S/N 4.5-5.5) lie
    # within this distance of their object's true position (measured: tests/test_physics.py).
    match_radius_px: float = 1.20
    rate_window_deg_per_day: tuple = (0.05, 3.5)  # SETTING (not published)
    # SETTING: the linker chains detections across successive exposures (ES-AllSky IV.3.b: "link
    # non-stationary detection pairs from successive single-exposure source lists"), bridging at
    # most this many exposures without a detection.
    max_gap: int = 2
    depth_jitter_mag: float = 0.15  # SETTING: frame-to-frame background variation
    # Coverage: WISE, half the 47' frame across the scan (K; EW); NEO Surveyor, half the field (B21).
    field_halfwidth_deg: tuple = (0.39, 0.39)
    frame_loss: float = 0.05       # SETTING: exposures lost to frame edges (WISE) or chip gaps (NEOS)
    # Noise peaks: matched-filter S/N >= detect_snr per pixel^2 per band, measured on white noise
    # with the pipeline's own sub-pixel PSF fit (benchmarks/measure_noise_peaks.py; tested).
    noise_peak_density_px2: tuple = (6.1e-6, 5.1e-6)
    # Other false detections per square degree of one exposure, after the pipeline's artifact
    # flagging and stationary rejection (SETTINGS: no source gives them; docs/simulator.md).
    false_density_deg2: dict = field(default_factory=lambda: {
        "cosmic_ray": 10.0, "hot_pixel": 4.0, "latent": 4.0,
        "star_residual": 3.0,      # at the galactic poles; rises with the star counts toward the plane
        "other_object": 6.0})      # on the ecliptic; falls off as exp(-|beta| / 12 deg)
    extra: dict = field(default_factory=dict)


NEOWISE = Instrument(
    name="neowise", code=1, id_prefix="NW",
    channels=("W1", "W2"),
    wavelength_nm=(3352.6, 4602.8),            # K constants/wise.rs
    zero_point_jy=(306.681, 170.663),          # K (AllWISE ES IV.3.a)
    pixel_scale_arcsec=2.75,                   # ES-AllSky II.4.b
    fwhm_arcsec=(6.1, 6.4),                    # W10
    depth_5sigma_mag=(15.3, 14.4),             # ES-Prelim II.2
    depth_5sigma_mag_bright=(15.3, 14.4),
    magzp=(20.5, 19.5),
    gain=5.0,
    saturation_mag=(8.0, 7.0),
    observer="wise", cadence="wise",
    mjd_range=(56640.0, 60500.0),              # NEOWISE reactivation, Dec 2013 - 2024
)

# NEO Surveyor (formerly NEOCam): one observation is one ~30 s exposure of a
# six-exposure visit (B21), so its single-exposure depth is the visit depth
# brightened by 2.5 log10(sqrt(6)) = 0.97 mag.
_VISIT_TO_EXPOSURE = 0.973
_NEOS_VISIT_DEPTH_FAINT = (16.05, 14.41)   # 65 uJy NC1, 110 uJy NC2 (NWP), low zodi
_NEOS_VISIT_DEPTH_BRIGHT = (15.38, 13.40)  # 120 uJy NC1, 280 uJy NC2 (NWP), high zodi
NEOSURVEYOR = Instrument(
    name="neosurveyor", code=2, id_prefix="NS",
    channels=("NC1", "NC2"),
    wavelength_nm=(4700.0, 8000.0),            # K constants/neos.rs
    zero_point_jy=(170.662, 64.13),            # K
    pixel_scale_arcsec=3.0,                    # derived from the field (B21, K)
    fwhm_arcsec=(2.2, 3.6),                    # estimate: 1.03 lambda/D (50 cm, B20) with 1" jitter
    depth_5sigma_mag=tuple(d - _VISIT_TO_EXPOSURE for d in _NEOS_VISIT_DEPTH_FAINT),
    depth_5sigma_mag_bright=tuple(d - _VISIT_TO_EXPOSURE for d in _NEOS_VISIT_DEPTH_BRIGHT),
    magzp=(22.0, 21.0),
    gain=5.0,
    saturation_mag=(9.0, 7.5),
    observer="l1", cadence="neos",
    mjd_range=(62000.0, 63800.0),              # a nominal 5-year survey from 2028
    detect_snr=4.5,
    link_tolerance_px=1.2,
    match_radius_px=0.77,                      # measured as for NEOWISE: its PSF is sharper
    field_halfwidth_deg=(0.85, 3.55),          # 1.7 x 7.1 deg (B21), long axis north (SETTING)
    frame_loss=0.10,                           # chip gaps (SETTING)
    noise_peak_density_px2=(1.7e-5, 1.4e-5),   # undersampled PSF: more, sharper peaks
)

INSTRUMENTS = {"neowise": NEOWISE, "neosurveyor": NEOSURVEYOR}


def get(name: str) -> Instrument:
    from neoqa.errors import NeoqaError

    try:
        return INSTRUMENTS[name]
    except KeyError:
        raise NeoqaError(f"unknown survey {name!r}; choose one of {', '.join(INSTRUMENTS)}") from None


__all__ = ["Instrument", "NEOWISE", "NEOSURVEYOR", "INSTRUMENTS", "get", "replace"]
