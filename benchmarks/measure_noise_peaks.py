"""Noise peaks per px^2 per band at the detection threshold, for each instrument: the numbers in
``Instrument.noise_peak_density_px2`` (docs/simulator.md, "False detections"). About a minute a
band at the default size. Usage: python benchmarks/measure_noise_peaks.py [--size 4096] [--images 3]"""

from __future__ import annotations

import argparse

import numpy as np

from neoqa.simulate import instruments
from neoqa.simulate.field import measure_noise_peak_density


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--images", type=int, default=3)
    args = ap.parse_args(argv)
    for inst in instruments.INSTRUMENTS.values():
        got = measure_noise_peak_density(inst, args.size, args.images, seed=1)
        # the smooth-field (Euler characteristic) density at the threshold, for comparison
        from neoqa.simulate.photometry import Frame
        u = inst.detect_snr
        ec = [1 / (2 * s * s) * u * np.exp(-u * u / 2) / (2 * np.pi) ** 1.5 for s in Frame(inst).sigma_px]
        print(f"{inst.name}: measured {', '.join(f'{g:.2e}' for g in got)} per px^2 per band "
              f"(in use {inst.noise_peak_density_px2}; smooth-field theory {', '.join(f'{e:.2e}' for e in ec)})")


if __name__ == "__main__":
    main()
