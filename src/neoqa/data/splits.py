"""Deterministic train / validation / test splits from the sheet ids.

A sheet's split is a function of its id alone, so adding sheets never reshuffles old ones.
"""

from __future__ import annotations

import hashlib

import numpy as np

TRAIN, VAL, TEST = 0, 1, 2
SPLIT_NAMES = ("train", "validation", "test")
FRACTIONS = (0.70, 0.15, 0.15)


def _uniform(sheet_ids, salt: bytes = b"") -> np.ndarray:
    """A number in [0, 1) per id: its blake2b hash (keyed by ``salt`` for an independent draw)."""
    return np.array([int.from_bytes(hashlib.blake2b(str(s).encode(), digest_size=8, key=salt).digest(), "big") / 2**64
                     for s in sheet_ids])


def split_of(sheet_ids, fractions=FRACTIONS) -> np.ndarray:
    u = _uniform(sheet_ids)
    edges = np.cumsum(fractions)
    return np.searchsorted(edges, u, side="right").clip(0, 2).astype(np.int8)


def fold_of(sheet_ids, folds: int) -> np.ndarray:
    """Cross-validation fold 0..folds-1 of each sheet, from its id, independent of its split."""
    return np.minimum((_uniform(sheet_ids, b"neoqa-folds") * folds).astype(np.int64), folds - 1)


def labelled_rows(batch, which: int) -> np.ndarray:
    """Positions of the labelled sheets of ``batch`` in split ``which`` (TRAIN, VAL or TEST)."""
    return np.flatnonzero((split_of(batch.sheet_id) == which) & (batch.label >= 0))


def labelled(batch, which: int):
    """The labelled sheets of ``batch`` in split ``which``."""
    return batch.select(labelled_rows(batch, which))


def train_validation_test(batch):
    """The labelled sheets of ``batch`` in each split: (train, validation, test)."""
    return tuple(labelled(batch, which) for which in (TRAIN, VAL, TEST))
