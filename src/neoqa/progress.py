"""Progress on stderr: every bar neoqa shows comes from ``progress_bar`` (tqdm), so one switch
(``set_quiet``, the command line's ``--quiet``) silences them all, as a nightly job's log wants. For
long steps whose library shows none: a bar over LightGBM's trees (its callback), and for a fit that
reports nothing while it runs (scikit-learn's MLPs and kernels) a line that says what is running and
for how long, refreshed every second, so no step is silent. Nothing here guesses a fraction it does
not know."""

from __future__ import annotations

import contextlib
import threading

from tqdm import tqdm

_quiet = False


def set_quiet(quiet: bool = True) -> None:
    """Silence every progress bar of this process (``--quiet``), or bring them back."""
    global _quiet
    _quiet = bool(quiet)


def progress_bar(iterable=None, **kw):
    """A tqdm bar (tqdm's arguments), shown unless the caller disables it or the process is quiet."""
    kw["disable"] = bool(kw.get("disable", False)) or _quiet
    return tqdm(iterable, **kw)


@contextlib.contextmanager
def heartbeat(desc: str, enabled: bool = True):
    """``desc: 12 s`` on stderr while the block runs, refreshed every second (a bar without a total:
    the step's length is not known in advance)."""
    if not enabled or _quiet:
        yield
        return
    bar = progress_bar(total=None, desc=desc, bar_format="{desc}: {elapsed}", mininterval=0)
    stop = threading.Event()

    def tick():
        while not stop.wait(1.0):
            bar.refresh()

    thread = threading.Thread(target=tick, daemon=True, name="neoqa-heartbeat")
    try:                          # started inside: a stop raised at any point still ends the thread
        thread.start()
        yield
    finally:
        stop.set()
        if thread.is_alive():
            thread.join()
        bar.close()


def tree_bar(total: int, desc: str, enabled: bool = True):
    """A LightGBM callback that advances a bar by one tree per boosting round; call ``.close()`` on
    the returned callback after the fit (it also closes itself at the last tree)."""
    bar = progress_bar(total=total, desc=desc, unit="tree", disable=not enabled)

    def callback(env):
        bar.update(1)
        if env.iteration + 1 >= env.end_iteration:
            bar.close()

    callback.close = bar.close
    return callback
