"""Sorting for the few values of one sheet or one patch border, inside compiled loops
(``np.sort`` allocates on every call, which costs more than sorting ten values)."""

from numba import njit


@njit(inline="always")
def insertion_sort(a, m):
    """Sort a[:m] in place."""
    for i in range(1, m):
        v = a[i]
        j = i - 1
        while j >= 0 and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v

