"""Names shared by the simulator, the on-disk format, ingest and the models.

Scalar names are channel-agnostic (``ch1``/``ch2``), so that NEOWISE (W1/W2) and
NEO Surveyor (NC1/NC2) sheets share one schema and a model can move between them;
the band names of a dataset's channels are stored beside the data.
"""

from __future__ import annotations

import hashlib
import json

FORMAT_NAME = "neoqa-sheets"
FORMAT_VERSION = 1
N_CHANNELS = 2
DEFAULT_DETECT_SNR = 4.5      # WMOPS's single-exposure detection threshold, where a dataset does not record its own
CUTOUT_SIZE = 15  # pixels; see docs/format.md for why
LABEL_MIN_OBS = 5  # the label rule: real iff at least this many observations hold one moving object

SHEET_SCALARS = (
    "k",
    "time_span_hr",
    "rate_deg_per_day",
    "position_angle_deg",
    "fit_rms_arcsec",
    "fit_max_offset_arcsec",
    "snr_median_ch1",
    "snr_median_ch2",
    "snr_max_ch1",
    "snr_max_ch2",
    "mag_median_ch1",
    "mag_median_ch2",
    "color_ch1_ch2",
    "mag_scatter_ch2",
    "chi2_median",
    "near_star_fraction",
    "detected_fraction_ch1",
    "detected_fraction_ch2",
    "composite_snr_ch1",
    "composite_snr_ch2",
    "sky_median_ch1",
    "sky_median_ch2",
    "ecliptic_lat_deg",
    "galactic_lat_deg",
    "solar_elongation_deg",
)

OBS_SCALARS = (
    "dt_hr",
    "fit_offset_arcsec",
    "snr_ch1",
    "snr_ch2",
    "mag_ch1",
    "mag_ch2",
    "magerr_ch1",
    "magerr_ch2",
    "psf_chi2",
    "sky_ch1",
    "sky_ch2",
    "near_star_flag",
    "star_dist_arcsec",
    "star_mag",
)

# What a linked detection truly was (simulation truth; no model may read it).
SOURCE_KINDS = (
    "object",          # the tracklet's moving object (or one of two mixed objects)
    "noise",           # a noise excursion above the detection threshold
    "cosmic_ray",
    "hot_pixel",
    "latent",          # persistence of an earlier bright source
    "diffraction_spike",
    "halo",
    "ghost",           # optical ghost of a bright star (W2 only in WISE)
    "star_residual",   # a stationary source that escaped stationary rejection
    "other_object",    # an unrelated moving object
)
SOURCE_CODE = {name: i for i, name in enumerate(SOURCE_KINDS)}

SCENARIOS = ("object", "two_objects", "chance", "artifact")
OBJECT_CLASSES = ("none", "mba", "neo")

TRUTH_SHEET_FIELDS = (
    "clean_label",
    "scenario",
    "object_class",
    "n_object_obs",
    "diameter_km",
    "albedo",
    "beaming",
    "r_au",
    "delta_au",
    "phase_deg",
    "true_rate_deg_per_day",
    "true_snr",
)
TRUTH_OBS_FIELDS = ("source_kind", "object_id", "true_x_px", "true_y_px")
# Added in 0.4.0; data written before reads them as NaN. Where each of the sheet's objects truly is,
# relative to the cutout centre (px; NaN where the object is not in that exposure), and the
# observatory's heliocentric ecliptic position at the exposure (AU).
TRUTH_OBS_EXTRA = ("object_x_px", "object_y_px", "object2_x_px", "object2_y_px",
                   "observer_x_au", "observer_y_au", "observer_z_au")


def schema_dict(channels_count: int = N_CHANNELS, cutout_size: int = CUTOUT_SIZE,
                sheet_scalars=SHEET_SCALARS, obs_scalars=OBS_SCALARS) -> dict:
    """The part of a dataset a model depends on."""
    return {
        "channels": int(channels_count),
        "cutout_size": int(cutout_size),
        "sheet_scalars": list(sheet_scalars),
        "obs_scalars": list(obs_scalars),
    }


def schema_fingerprint(schema: dict) -> str:
    blob = json.dumps(schema, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
