"""The linker's chains: which detections a tracklet keeps, and how likely a hypothesis becomes one.

The linker (docs/simulator.md, "The linker") joins detections in successive exposures that lie
within its tolerance of a linear motion, bridging at most ``max_gap`` exposures without one, and
makes a tracklet of a chain of at least ``min_links`` detections (ES-AllSky IV.3.b: pairs from
successive exposures, chained). Three compiled pieces serve it:

- ``longest_chain`` keeps, of a candidate's linked detections, its longest chain;
- ``accept_probability`` is the chance that a hypothesis whose exposures hold a detection within
  tolerance with probabilities p becomes a tracklet (a finite automaton over the exposures: the
  length of the chain so far and the gap since its last detection);
- ``sample_accepted`` draws which exposures hold a detection, given that it did (forward filtering,
  backward sampling on the same automaton), so that false tracklets are drawn from exactly the
  fields that make them, however rare.

Exposures are the columns of [n, E] arrays; a probability below 0 marks a column that is not an
exposure of that candidate (not covered, or lost), which neither breaks nor extends a chain.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def longest_chain(offsets, linked, max_gap):
    """Per candidate (rows offsets[i]:offsets[i + 1], in time order), keep the longest chain of
    linked rows whose successive members are separated by at most ``max_gap`` unlinked rows (the
    earliest on a tie) and unlink the rest, in place. Returns each candidate's chain length."""
    n = offsets.shape[0] - 1
    out = np.zeros(n, np.int64)
    for i in range(n):
        a, b = offsets[i], offsets[i + 1]
        best, best_start, best_end = 0, -1, -1
        count, start, last = 0, -1, -1
        for j in range(a, b):
            if not linked[j]:
                continue
            if count > 0 and j - last - 1 <= max_gap:
                count += 1
            else:
                count, start = 1, j
            last = j
            if count > best:
                best, best_start, best_end = count, start, j
        for j in range(a, b):
            if linked[j] and (j < best_start or j > best_end):
                linked[j] = False
        out[i] = best
    return out


@njit(inline="always")
def _n_states(min_links, max_gap):
    # state 0: no chain; 1 + (r - 1)(G + 1) + g: a chain of r < min_links detections, g exposures
    # since its last; the last state: a chain reached min_links (absorbing)
    return 2 + (min_links - 1) * (max_gap + 1)


@njit(inline="always")
def _step(alpha, new, p, min_links, max_gap):
    """new = alpha after one exposure with detection probability p (summed over both outcomes)."""
    G1 = max_gap + 1
    S = new.shape[0]
    acc = S - 1
    for s in range(S):
        new[s] = 0.0
    q = 1.0 - p
    new[0] += alpha[0] * q
    new[1] += alpha[0] * p
    for r in range(1, min_links):
        for g in range(G1):
            a = alpha[1 + (r - 1) * G1 + g]
            if a == 0.0:
                continue
            new[acc if r + 1 == min_links else 1 + r * G1] += a * p
            new[0 if g + 1 > max_gap else 1 + (r - 1) * G1 + g + 1] += a * q
    new[acc] += alpha[acc]


@njit(cache=True)
def accept_probability(p, min_links, max_gap):
    """P(some chain reaches ``min_links``) for each row of p [n, E]."""
    n, E = p.shape
    S = _n_states(min_links, max_gap)
    out = np.empty(n)
    alpha = np.empty(S)
    new = np.empty(S)
    for i in range(n):
        alpha[:] = 0.0
        alpha[0] = 1.0
        for e in range(E):
            if p[i, e] < 0:
                continue
            _step(alpha, new, p[i, e], min_links, max_gap)
            alpha[:] = new
        out[i] = alpha[S - 1]
    return out


@njit(cache=True)
def sample_accepted(p, u, min_links, max_gap):
    """Which exposures hold a detection [n, E], drawn given that the row became a tracklet
    (``accept_probability`` > 0). ``u`` [n, E]: uniforms, one per exposure, so the draw is a pure
    function of the caller's generator."""
    n, E = p.shape
    S = _n_states(min_links, max_gap)
    G1 = max_gap + 1
    acc = S - 1
    hits = np.zeros((n, E), np.bool_)
    alpha = np.zeros((E + 1, S))
    for i in range(n):
        alpha[0, :] = 0.0
        alpha[0, 0] = 1.0
        for e in range(E):
            if p[i, e] < 0:
                alpha[e + 1, :] = alpha[e, :]
            else:
                _step(alpha[e], alpha[e + 1], p[i, e], min_links, max_gap)
        s = acc                                   # conditioned: the chain was reached
        for e in range(E - 1, -1, -1):
            pe = p[i, e]
            if pe < 0:
                continue
            q = 1.0 - pe
            prev = alpha[e]
            # the (predecessor, outcome) pairs that lead to s, each with its weight
            w_hit = np.zeros(S)
            w_miss = np.zeros(S)
            if s == acc:
                w_hit[acc] = prev[acc] * pe
                w_miss[acc] = prev[acc] * q
                for g in range(G1):
                    w_hit[1 + (min_links - 2) * G1 + g] += prev[1 + (min_links - 2) * G1 + g] * pe
            elif s == 0:
                w_miss[0] = prev[0] * q
                for r in range(1, min_links):
                    w_miss[1 + (r - 1) * G1 + max_gap] = prev[1 + (r - 1) * G1 + max_gap] * q
            else:
                r = (s - 1) // G1 + 1
                g = (s - 1) % G1
                if g == 0:                        # a detection here extended (or began) the chain
                    if r == 1:
                        w_hit[0] = prev[0] * pe
                    else:
                        for h in range(G1):
                            w_hit[1 + (r - 2) * G1 + h] = prev[1 + (r - 2) * G1 + h] * pe
                else:
                    w_miss[s - 1] = prev[s - 1] * q
            total = 0.0
            for t in range(S):
                total += w_hit[t] + w_miss[t]
            x = u[i, e] * total
            chosen, hit = 0, False
            c = 0.0
            for t in range(S):
                c += w_hit[t]
                if x < c:
                    chosen, hit = t, True
                    break
                c += w_miss[t]
                if x < c:
                    chosen, hit = t, False
                    break
            else:                                 # rounding at the top end: the last nonzero pair
                for t in range(S - 1, -1, -1):
                    if w_miss[t] > 0 or w_hit[t] > 0:
                        chosen, hit = t, w_miss[t] == 0
                        break
            hits[i, e] = hit
            s = chosen
    return hits
