"""Simulation settings that are not instrument facts (each documented in docs/simulator.md)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class SimConfig:
    survey: str = "neowise"
    positive_fraction: float = 0.23          # the paper: 77% of sheets are false
    label_noise: float = 0.02                # the paper: labels ~98% accurate
    neo_fraction: float = 0.3                # share of object candidates that are NEOs (over-represented: docs)
    # Candidates of each kind simulated; the label rule, not the kind, decides the class, and the
    # runner keeps positive_fraction, so these set only the mix within a class (objects 2:1 to
    # mixtures among the real sheets, chance 2.2:1 to artifact tracklets among the false) and how
    # few candidates are wasted (a false tracklet survives the pipeline's cuts a fifth of the time).
    scenario_weights: dict = field(default_factory=lambda: {
        "object": 0.07, "two_objects": 0.035, "chance": 0.615, "artifact": 0.28})
    # Objects are kept when detectable: expected single-exposure S/N at mid-track, in the brighter
    # band, at least this (fainter ones almost never give the linker 5 detections at S/N 4.5).
    # Their sizes come from the populations' size laws (simulate/population.py), never from an S/N.
    min_object_snr: float = 2.5
    # Truth: a detection within the instrument's matching radius of an object whose expected
    # S/N there is at least this holds that object (docs/simulator.md, "Truth").
    match_min_snr: float = 2.0
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
    # Bright stars of artifact tracklets and the detections their features spawn (docs/simulator.md,
    # "False detections"): magnitudes in the first band, drawn from the star counts above.
    bright_star_mag: tuple = (3.0, 9.5)
    feature_snr: float = 2.0                 # a feature spawns detections where its pixels reach this x noise
    spike_density_px: float = 0.25           # detections per exposure per pixel of spike arm
    spike_inner_px: float = 2.0              # inside this the star's core (stationary rejection) takes over
    halo_density_px: float = 0.1             # detections per exposure per pixel of halo ring
    halo_radius_px: tuple = (4.0, 12.0)
    ghost_offset_px: tuple = (8.0, 20.0)     # the long band's optical ghost, a fixed offset from its star
    ghost_mu: float = 0.3                    # detections per exposure in the ghost's blob
    ghost_max_mag: float = 7.5
    latent_offset_px: tuple = (0.0, 6.0)     # latents fall near the star's place on the sky (ES-AllSky II.3.c)
    latent_mu: float = 0.3
    latent_max_mag: float = 8.0
    blob_radius_px: float = 1.5
    # Importance sampling of false tracklets: hypotheses tried per candidate (field, bright star).
    hypothesis_tries: int = 16
    artifact_tries: int = 24
    # The pipeline's sky level comes from an annulus of this many pixels about a detection (radii
    # 18-25 px, 50-70 arcsec for WISE, like its aperture photometry's): its error is that median's.
    sky_annulus_px: int = 945
    margin_px: int = 2                       # patch margin around the cutout for recentering
