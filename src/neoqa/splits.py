"""Deterministic train / validation / test splits from the sheet ids.

A sheet's split is a function of its id alone, so adding sheets never reshuffles old ones.
"""

from __future__ import annotations

import hashlib

import numpy as np

TRAIN, VAL, TEST = 0, 1, 2
FRACTIONS = (0.70, 0.15, 0.15)


def split_of(sheet_ids, fractions=FRACTIONS) -> np.ndarray:
    u = np.array([int.from_bytes(hashlib.blake2b(str(s).encode(), digest_size=8).digest(), "big") / 2**64
                  for s in sheet_ids])
    edges = np.cumsum(fractions)
    return np.searchsorted(edges, u, side="right").clip(0, 2).astype(np.int8)
