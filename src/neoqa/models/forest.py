"""LightGBM's trees as flat arrays, walked without branches by one compiled loop: the gbdt's
predictions, LightGBM's to the last bit, in about half its time.

LightGBM walks 600 trees for 5,000 sheets in ~115 ms on 2 cores here: each split is a branch the
processor guesses wrong half the time. Here the trees are arrays read from ``Booster.dump_model()``
(data, never code): per node a feature, a threshold, two children side by side, and the side a
missing value takes; a leaf is a node whose children are itself, so every sheet takes exactly the
tree's depth in steps, and each step picks its child by arithmetic (``child[2 node + right]``), not
by a branch. Sheets are walked 32 at a time through one tree (numba, the interpreter lock left),
the rows split over the thread budget's threads (``threads.split_rows``; no OpenMP pool of its
own): ~50-70 ms for the same work (docs/performance.md).

The rule is LightGBM's (its ``NumericalDecision``): ``value <= threshold`` goes left; a NaN goes the
split's default way where the split learnt NaN as missing, and where it learnt nothing about
missing values a NaN is taken as 0. Leaf values are summed in LightGBM's order, in double, so the
raw scores are LightGBM's exactly (tested on every fitted gbdt of the suite).

Only what the gbdt grows is flattened: binary objective, numerical splits, constant leaves, no
zero-as-missing. Any other LightGBM model (categorical splits, linear trees, several classes) is
predicted by LightGBM.
"""

from __future__ import annotations

import weakref

import numpy as np
from numba import njit

from neoqa.threads import split_rows

BLOCK = 32                   # sheets walked together through one tree


class FlatForest:
    """A fitted binary LightGBM booster's trees as arrays; ``raw(X)`` its raw scores (logits)."""

    def __init__(self, feature, threshold, child, nan_right, value, roots, depth, n_features):
        self.feature, self.threshold, self.child, self.nan_right = feature, threshold, child, nan_right
        self.value, self.roots, self.depth, self.n_features = value, roots, depth, n_features

    @classmethod
    def from_booster(cls, booster) -> "FlatForest | None":
        """The booster's trees flattened, or None where its model is not one this walk reproduces."""
        dump = booster.dump_model()
        if dump.get("num_class", 1) != 1 or dump.get("num_tree_per_iteration", 1) != 1 \
                or not str(dump.get("objective", "")).startswith("binary") or dump.get("average_output"):
            return None
        feature, threshold, child, nan_right, value = [], [], [], [], []

        def add(node) -> tuple[int, int]:          # (its index, the depth below it)
            i = len(feature)
            feature.append(0)
            threshold.append(np.inf)               # a leaf: never right, its children itself
            child.extend((i, i))
            nan_right.append(0)
            value.append(0.0)
            if "split_index" not in node:
                if "leaf_coeff" in node:           # a linear tree
                    raise _Unsupported
                value[i] = float(node["leaf_value"])
                return i, 0
            if node.get("decision_type") != "<=" or node.get("missing_type") not in ("None", "NaN"):
                raise _Unsupported                 # categorical, or zero as missing
            feature[i], threshold[i] = int(node["split_feature"]), float(node["threshold"])
            nan_right[i] = int(not node["default_left"] if node["missing_type"] == "NaN" else 0.0 > threshold[i])
            (left, dl), (right, dr) = add(node["left_child"]), add(node["right_child"])
            child[2 * i], child[2 * i + 1] = left, right
            return i, 1 + max(dl, dr)

        try:
            tops = [add(tree["tree_structure"]) for tree in dump["tree_info"]]
        except (_Unsupported, KeyError):
            return None
        return cls(np.array(feature, np.int32), np.array(threshold, np.float64), np.array(child, np.int32),
                   np.array(nan_right, np.int32), np.array(value, np.float64),
                   np.array([r for r, _ in tops], np.int32), np.array([d for _, d in tops], np.int32),
                   int(dump["max_feature_idx"]) + 1)

    def raw(self, X: np.ndarray) -> np.ndarray:
        """The raw score (log-odds) of each row of ``X`` [n, features]."""
        X = np.ascontiguousarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got shape {X.shape}")
        return split_rows(_walk, X, self.feature, self.threshold, self.child, self.nan_right, self.value,
                          self.roots, self.depth, BLOCK, min_rows=256)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """[n, 2] probabilities of classes 0 and 1, as ``LGBMClassifier.predict_proba`` gives them."""
        p = 1.0 / (1.0 + np.exp(-self.raw(X)))
        return np.stack([1.0 - p, p], axis=1)


class _Unsupported(Exception):
    pass


@njit(cache=True, nogil=True)
def _walk(X, feature, threshold, child, nan_right, value, roots, depth, block):
    n = X.shape[0]
    out = np.empty(n, np.float64)
    for b in range((n + block - 1) // block):
        lo = b * block
        w = min(n, lo + block) - lo
        total = np.zeros(w)
        node = np.empty(w, np.int32)
        for t in range(roots.shape[0]):
            node[:] = roots[t]
            for _ in range(depth[t]):
                for j in range(w):
                    i = node[j]
                    v = np.float64(X[lo + j, feature[i]])
                    # right: above the threshold, or a NaN where the split sends NaN right (NaN > t is false)
                    node[j] = child[2 * i + (np.int32(v > threshold[i]) | (np.int32(v != v) & nan_right[i]))]
            for j in range(w):
                total[j] += value[node[j]]
        out[lo:lo + w] = total
    return out


_FORESTS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()     # booster -> FlatForest or None


def forest_of(booster) -> FlatForest | None:
    """The booster's ``FlatForest`` (flattened once per booster, kept while the booster lives;
    never saved with a model), or None where LightGBM must predict it."""
    if booster not in _FORESTS:
        _FORESTS[booster] = FlatForest.from_booster(booster)
    return _FORESTS[booster]
