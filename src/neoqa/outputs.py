"""Writing results without destroying anything: the one way every neoqa output reaches disk.

Rules (docs/format.md, "Outputs"):
- an existing output is replaced only when the caller asks (``overwrite``), and only when it is
  a regular file or a folder that neoqa wrote (a marker, a dataset manifest or a model.json says
  so); an empty folder counts as absent; links, devices and other people's folders never are;
- an output may not be, lie inside, or contain one of the command's inputs;
- everything is written under a hidden temporary sibling (``.NAME.PID-RANDOM.partial``) and
  moved into place only when complete. A folder replaces an old one by an atomic exchange of
  the two names (Linux ``renameat2``), so a reader sees the old result or the new one, never a
  mix and never nothing; the old one is removed afterwards. Partials of killed runs (their
  process is gone) are removed by the next run that writes the same output.
- outputs get the user's umask, not the 0700 of ``mkdtemp``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import re
import secrets
import shutil
import signal
from pathlib import Path

from neoqa.errors import NeoqaError

MARKER = ".neoqa-output.json"
# Files that also prove a folder is neoqa's (datasets, models and zoo runs written before the
# marker existed): the file's JSON object holds these keys, with these values where not None.
_OWN_FILES = (("manifest.json", {"format": "neoqa-sheets", "shards": None}),
              ("model.json", {"neoqa_version": None, "schema_fingerprint": None}),
              ("results.json", {"models": None, "paper": None, "seed": None, "total_seconds": None}))
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]+\.partial$")


# ------------------------------------------------------------------ checks
def check_output(final, *, overwrite: bool = False, inputs=(), folder: bool = False) -> Path:
    """Refuse, with one line, an output that would destroy what it was not asked to replace."""
    final = Path(final)
    where = final.resolve()
    for inp in inputs:
        if inp is None:
            continue
        src = Path(inp).resolve()
        if where == src or src in where.parents:
            raise NeoqaError(f"{final}: the output would be written into the input {inp}; choose another --out")
        if where in src.parents:
            raise NeoqaError(f"{final}: the output would replace a folder holding the input {inp}; "
                             "choose another --out")
    if final.is_symlink():
        raise NeoqaError(f"{final}: is a symbolic link; neoqa does not replace links (remove it or choose another --out)")
    if final.exists():
        if folder:
            if not final.is_dir():
                raise NeoqaError(f"{final}: exists and is not a folder")
            if not any(final.iterdir()):
                return final                       # an empty folder holds nothing to destroy
            if not overwrite:
                raise NeoqaError(f"{final}: already exists (pass --overwrite to replace it)")
            if not written_by_neoqa(final):
                raise NeoqaError(f"{final}: is not a folder neoqa wrote; refusing to replace it")
        else:
            if final.is_dir():
                raise NeoqaError(f"{final}: is a folder; this output is a file")
            if not final.is_file():
                raise NeoqaError(f"{final}: is not a regular file (a device or pipe?); refusing to replace it")
            if not overwrite:
                raise NeoqaError(f"{final}: already exists (pass --overwrite to replace it)")
            if not file_written_by_neoqa(final):
                raise NeoqaError(f"{final}: is not a file neoqa wrote; refusing to replace it")
    parent = _existing_parent(final)
    if not parent.is_dir():
        raise NeoqaError(f"{parent}: is not a folder, so {final} cannot be written")
    if not os.access(parent, os.W_OK | os.X_OK):
        why = "a read-only disk" if os.statvfs(parent).f_flag & os.ST_RDONLY else "permission denied"
        raise NeoqaError(f"{parent}: cannot write here ({why})")
    return final


def written_by_neoqa(folder: Path) -> bool:
    """A folder neoqa wrote: its marker, or a dataset manifest or model.json of neoqa's own."""
    folder = Path(folder)
    if (folder / MARKER).is_file():
        return True
    for name, keys in _OWN_FILES:
        try:
            doc = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(doc, dict) and all(k in doc and (v is None or doc[k] == v) for k, v in keys.items()):
            return True
    return False


def file_written_by_neoqa(path: Path) -> bool:
    """A file carrying neoqa's mark (``file_mark``): HDF5 shards their format attribute, Parquet
    tables their metadata, figures their creator, JSON files a version key, a suspects table its
    header, the report its generator tag."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix in (".h5", ".hdf5"):
            import h5py

            with h5py.File(path, "r") as f:
                return f.attrs.get("format") == "neoqa-sheets"
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return b"neoqa_version" in (pq.read_schema(path).metadata or {})
        if suffix == ".json":
            doc = json.loads(path.read_text())
            return isinstance(doc, dict) and "neoqa_version" in doc
        if suffix == ".csv":
            with open(path, encoding="utf-8") as f:
                return f.readline().startswith(SUSPECTS_HEADER)
        if path.stat().st_size > (64 << 20):
            return False
        return FIGURE_MARK.encode() in path.read_bytes()   # png, pdf, svg and the report's page
    except (OSError, ValueError, UnicodeDecodeError):
        return False


# What marks the files neoqa writes (see file_written_by_neoqa).
FIGURE_MARK = "made by neoqa"
SUSPECTS_HEADER = "rank,sheet_id,label,p_real_cross_validated"


def file_mark() -> dict:
    """Key-value metadata that marks a table or a JSON summary as neoqa's."""
    from neoqa import __version__

    return {"neoqa_version": __version__}


def _existing_parent(path: Path) -> Path:
    p = path.absolute().parent
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


# ------------------------------------------------------------------ writing
@contextlib.contextmanager
def atomic_output(final, *, overwrite: bool = False, inputs=(), folder: bool = False, kind: str = "output"):
    """Yield a temporary path to write ``final`` at; move it into place only on success.

    ``folder=True`` yields an existing empty folder (a marker naming ``kind`` is added to it);
    otherwise a file path whose parent exists.
    """
    from neoqa import __version__

    final = check_output(final, overwrite=overwrite, inputs=inputs, folder=folder)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NeoqaError(f"{final.parent}: cannot create the folder ({e.strerror})") from None
    remove_stale_partials(final)
    tmp = final.parent / f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}.partial"
    tmp.mkdir()                                  # mode 0777 less the umask
    try:
        target = tmp if folder else tmp / final.name
        yield target
        if folder and not written_by_neoqa(tmp):   # datasets and models say so by their manifest or model.json
            (tmp / MARKER).write_text(json.dumps({"written_by": "neoqa", "neoqa_version": __version__,
                                                  "kind": kind}, sort_keys=True) + "\n")
        if not folder:
            if not target.exists():
                raise NeoqaError(f"{final}: nothing was written")
            check_output(final, overwrite=True, folder=False)      # still a regular file or absent
        with _signals_held():                     # a commit that has begun completes, then the signal acts
            _commit_folder(tmp, final) if folder else os.replace(target, final)
    finally:
        with _signals_held():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _signals_held():
    """Hold SIGINT, SIGTERM and SIGHUP for the few system calls of a commit or clean-up."""
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    except (AttributeError, OSError, ValueError):
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _commit_folder(tmp: Path, final: Path) -> None:
    if final.exists() and not final.is_symlink():
        if _exchange(tmp, final):
            return                               # tmp now holds the old result, removed by the caller
        aside = final.parent / f".{final.name}.{os.getpid()}-{secrets.token_hex(4)}.partial"
        os.rename(final, aside)                  # no exchange on this filesystem: a short gap
        try:
            os.rename(tmp, final)
        except OSError:
            os.rename(aside, final)
            raise
        shutil.rmtree(aside, ignore_errors=True)
        return
    os.rename(tmp, final)


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def remove_stale_partials(final: Path) -> None:
    """Remove temporary siblings of ``final`` left by runs whose process no longer exists."""
    final = Path(final)
    try:
        entries = list(final.parent.iterdir())
    except OSError:
        return
    for p in entries:
        m = _PARTIAL.match(p.name)
        if m and m["name"] == final.name and not _alive(int(m["pid"])):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_marker(folder: Path, kind: str) -> dict | None:
    """The marker of a folder neoqa writes in place, if it says the folder holds ``kind``."""
    try:
        mark = json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None
    return mark if isinstance(mark, dict) and mark.get("kind") == kind else None


def write_marker(folder: Path, mark: dict) -> None:
    """The marker that says what a folder neoqa writes in place (scores, a night) holds, replaced atomically."""
    tmp = Path(folder) / f".{MARKER}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(mark, sort_keys=True) + "\n")
    os.replace(tmp, Path(folder) / MARKER)


def write_text(final, text: str, **kw) -> Path:
    """A text file written atomically (the same rules as ``atomic_output``)."""
    with atomic_output(final, **kw) as tmp:
        tmp.write_text(text)
    return Path(final)


# ------------------------------------------------------------------ names
_SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")          # fullmatch: "$" would let "id\n" through


def safe_name(identifier) -> str:
    """A file name for an identifier (a sheet id): the id itself where it is a plain name, else
    its safe characters, a ``~`` and a hash of the whole id, so distinct ids never share a name
    and no id can reach outside its folder ("..", "/", a leading dot)."""
    s = str(identifier)
    if _SAFE.fullmatch(s) and ".." not in s:
        return s
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", s).strip("._")[:60] or "id"
    return f"{stem}~{hashlib.sha256(s.encode('utf-8')).hexdigest()[:12]}"


def confined(folder, relative, where: str) -> Path:
    """``folder / relative``, refusing any path that leaves ``folder`` (absolute, "..", a link)."""
    folder = Path(folder)
    rel = str(relative)
    if not rel or Path(rel).is_absolute() or ".." in Path(rel).parts or any(ord(c) < 32 for c in rel):
        raise NeoqaError(f"{where}: path {rel!r} must be a plain name inside {folder}")
    path = folder / rel
    if path.resolve() != folder.resolve() and folder.resolve() not in path.resolve().parents:
        raise NeoqaError(f"{where}: path {rel!r} leads outside {folder}")
    return path


def read_json(path: Path, missing: str | None = None) -> dict:
    """A JSON file as a dict; a missing or malformed file is one clear line.

    ``missing`` is the message for an absent file; without it an absent file gives {}.
    """
    if not path.exists():
        if missing is None:
            return {}
        raise NeoqaError(f"{path.parent}: {missing}")
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise NeoqaError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from None
    if not isinstance(value, dict):
        raise NeoqaError(f"{path}: expected a JSON object")
    return value


def provenance() -> dict:
    """Where an output came from: neoqa's version, the git commit of the source it ran from (with
    ``+modified`` when the tree had uncommitted changes; None outside a checkout), the UTC time and
    the command line."""
    import datetime
    import subprocess

    from neoqa import __version__

    commit = None
    src = Path(__file__).resolve().parent
    try:
        run = lambda *a: subprocess.run(["git", "-C", str(src), *a], capture_output=True, text=True,   # noqa: E731
                                        timeout=10)
        head = run("rev-parse", "--short=12", "HEAD")
        if head.returncode == 0:
            dirty = run("status", "--porcelain", "--untracked-files=no", "--", ".").stdout.strip()
            commit = head.stdout.strip() + ("+modified" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return {"neoqa_version": __version__, "commit": commit,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": command()}


_COMMAND: list | None = None


def record_command(argv) -> None:
    """The command line outputs record (``neoqa.cli.main`` sets it: it may be called in-process)."""
    global _COMMAND
    _COMMAND = ["neoqa", *map(str, argv)]


def command() -> str:
    """The command that is making an output: the one ``neoqa.cli.main`` ran, else this process's."""
    import shlex
    import sys

    return shlex.join(_COMMAND if _COMMAND is not None else sys.argv)
