"""Matplotlib set-up and atomic PNG writing, shared by every figure neoqa draws."""

from __future__ import annotations

from pathlib import Path

from neoqa import __version__
from neoqa.errors import NeoqaError
from neoqa.outputs import FIGURE_MARK, atomic_output


def pyplot():
    """matplotlib.pyplot, on the file-only Agg backend when nothing chose one (a pipeline machine
    has no display); a notebook's or a user's backend (pyplot already imported, or MPLBACKEND set)
    is left as it is."""
    import os
    import sys

    import matplotlib

    if "matplotlib.pyplot" not in sys.modules and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


FORMATS = ("png", "pdf", "svg")
_CREATOR = {"png": "Software", "pdf": "Creator", "svg": "Creator"}    # where each format keeps its maker


def check_format(path) -> str:
    """The figure format from a file name's suffix; an unknown one is one line naming it."""
    fmt = Path(path).suffix.lstrip(".").lower() or "png"
    if fmt not in FORMATS:
        raise NeoqaError(f"{path}: unknown figure format {fmt!r} (use one of {', '.join('.' + f for f in FORMATS)})")
    return fmt


def save(fig, path, dpi: int = 120, overwrite: bool = False, inputs=()) -> Path:
    """Write ``fig`` to ``path`` atomically (the format from the suffix, PNG by default) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        fmt = check_format(path)
        with atomic_output(path, overwrite=overwrite, inputs=inputs) as tmp:
            fig.savefig(tmp, dpi=dpi, format=fmt, metadata={_CREATOR[fmt]: f"{FIGURE_MARK} {__version__}"})
    finally:
        plt.close(fig)
    return path


MARKERS = "osD^v<>pP*Xhd"


def styles(names) -> dict:
    """One look per name (a model), kept in every figure of a run: the ten tab10 colours, then the
    same colours dashed and dotted, each with its own marker, so 13 or more models stay apart."""
    return {n: {"color": f"C{i % 10}", "ls": ("-", "--", ":")[(i // 10) % 3], "marker": MARKERS[i % len(MARKERS)]}
            for i, n in enumerate(names)}


def legend_outside(ax, **kw):
    """The legend to the right of ``ax``, off the data."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=7, title_fontsize=7,
                     frameon=False, **kw)
