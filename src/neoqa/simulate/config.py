"""Simulation settings that are not instrument facts (each documented in docs/simulator.md)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SimConfig:
    survey: str = "neowise"
    positive_fraction: float = 0.23          # the paper: 77% of sheets are false
    label_noise: float = 0.02                # the paper: labels ~98% accurate
    neo_fraction: float = 0.3                # share of object candidates that are NEOs (over-represented: docs)
    # Candidate kinds before linking and the label rule decide the label.
    scenario_weights: dict = field(default_factory=lambda: {
        "object": 0.28, "two_objects": 0.14, "chance": 0.40, "artifact": 0.18})
    # Objects are kept when detectable: expected single-exposure S/N at mid-track, in the brighter
    # band, at least this (fainter ones almost never give the linker 5 detections at S/N 4.5).
    # Their sizes come from the populations' size laws (simulate/population.py), never from an S/N.
    min_object_snr: float = 2.5
    fill_probability: float = 0.35           # a chance detection within tolerance of a missed epoch
    # Truth: a detection within the instrument's matching radius of an object whose expected
    # S/N there is at least this holds that object (docs/simulator.md, "Truth").
    match_min_snr: float = 2.0
    false_kinds: dict = field(default_factory=lambda: {
        "noise": 0.36, "cosmic_ray": 0.18, "hot_pixel": 0.07, "latent": 0.1,
        "star_residual": 0.12, "other_object": 0.1, "ghost": 0.07})
    artifact_kinds: dict = field(default_factory=lambda: {
        "diffraction_spike": 0.35, "halo": 0.3, "ghost": 0.2, "latent": 0.15})
    # Probability that the artifact flagger marks a spurious detection (then dropped).
    flag_probability: float = 0.5
    # Stars per square degree brighter than 1.5 mag below the ch1 depth at the
    # galactic pole, rising toward the plane as 1 + plane_boost exp(-|b| / scale).
    star_density_pole: float = 3000.0
    star_plane_boost: float = 12.0
    star_plane_scale_deg: float = 10.0
    star_count_slope: float = 0.33           # d log N / d mag
    max_field_stars: int = 5
    lightcurve_amp_mag: tuple = (0.0, 0.4)
    margin_px: int = 2                       # patch margin around the cutout for recentering
