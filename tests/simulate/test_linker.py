"""The linker's chains: the longest chain, the acceptance probability and draws given acceptance,
against brute force."""

import numpy as np
import pytest

from neoqa.simulate import linker


def _chain(hits, valid, max_gap=2):
    idx = np.flatnonzero(valid)
    linked = hits[idx].copy()
    return int(linker.longest_chain(np.array([0, len(idx)]), linked, max_gap)[0])


def test_longest_chain_bridges_short_gaps_only():
    offsets = np.array([0, 10, 18])
    linked = np.array([1, 1, 0, 0, 1, 0, 0, 0, 1, 1,  1, 0, 1, 1, 0, 0, 0, 1], bool)
    got = linker.longest_chain(offsets, linked, 2)
    # the first candidate: a gap of 3 breaks [0, 1, 4] from [8, 9]; the second keeps [10, 12, 13]
    assert list(got) == [3, 3]
    assert list(np.flatnonzero(linked)) == [0, 1, 4, 10, 12, 13]
    # a gap the linker bridges keeps everything
    linked = np.array([1, 0, 1, 0, 0, 1], bool)
    assert linker.longest_chain(np.array([0, 6]), linked, 2)[0] == 3 and linked.sum() == 3


@pytest.mark.parametrize("seed", [0, 1])
def test_acceptance_and_draws_given_acceptance_match_brute_force(seed):
    rng = np.random.default_rng(seed)
    E = 14
    p = rng.uniform(0.2, 0.7, (1, E))
    p[0, [3, 9]] = -1                                      # not exposures: neither break nor extend
    valid = p[0] >= 0
    n = 20_000
    hits = rng.random((n, E)) < np.where(valid, p[0], 0)
    ok = np.array([_chain(h, valid) >= 5 for h in hits])
    acc = linker.accept_probability(p, 5, 2)[0]
    assert acc == pytest.approx(ok.mean(), abs=4 * np.sqrt(acc * (1 - acc) / n))
    drawn = linker.sample_accepted(np.repeat(p, 5000, 0), rng.random((5000, E)), 5, 2)
    assert all(_chain(h, valid) >= 5 for h in drawn)
    assert not drawn[:, ~valid].any()
    # the marginals of the draws are those of the brute-force hits that made a chain
    np.testing.assert_allclose(drawn.mean(0), hits[ok].mean(0), atol=0.03)


def test_rare_tracklets_are_drawn_exactly_however_rare():
    """At a field's densities a chain of five is ~1e-19 likely; the draw given acceptance still
    gives chains, all of five detections with gaps the linker bridges."""
    p = np.full((200, 30), 1e-4)
    assert linker.accept_probability(p[:1], 5, 2)[0] < 1e-15
    drawn = linker.sample_accepted(p, np.random.default_rng(3).random(p.shape), 5, 2)
    assert np.all(drawn.sum(1) == 5)
    span = np.array([np.ptp(np.flatnonzero(h)) for h in drawn])
    assert np.all(span <= 4 + 4 * 2) and np.any(span > 4)
