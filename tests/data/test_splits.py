"""Splits from the sheet ids: deterministic, stable as sheets are added."""


import numpy as np



def test_splits_are_a_function_of_the_id():
    from neoqa.data.splits import split_of

    ids = [f"NW{i:09d}" for i in range(5000)]
    a = split_of(ids)
    b = split_of(ids[::-1])[::-1]
    np.testing.assert_array_equal(a, b)
    frac = np.bincount(a) / len(a)
    assert np.allclose(frac, [0.7, 0.15, 0.15], atol=0.02)
