"""Matplotlib set-up and atomic PNG writing, shared by every figure neoqa draws."""

from __future__ import annotations

from pathlib import Path

from .store import atomic_path


def pyplot():
    """matplotlib.pyplot on the file-only Agg backend (no display on pipeline machines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path, dpi: int = 120) -> Path:
    """Write ``fig`` to ``path`` atomically (the format from the suffix, PNG by default) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
