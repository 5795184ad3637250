"""The nightly job (``neoqa night CONFIG.toml``): tonight's sheets scored and triaged by a saved
operating point, as one command that can be rerun or resumed.

Steps, each idempotent (a rerun skips what is done and whole) and each leaving whole outputs if
the job is killed:
1. sheets: open the night's dataset, or ingest a survey team's FITS-plus-tables folder into
   ``OUT/sheets`` (skipped when a dataset ingested from the same folder is there);
2. scores: ``OUT/scores``, one Parquet part per shard (``decide.score``: a rerun skips whole parts,
   a killed run resumes);
3. queues: ``OUT/review.parquet`` (the sheets people must review, most likely real first) and
   ``OUT/accepted.parquet`` (the automatic accepts), remade only when the scores changed;
4. summary: ``OUT/night.json``, written last: what each step did, the counts per bucket, and
   where everything came from (config, version, model id, data digest, command).
Reports to the Minor Planet Center (ADES) join as a step once neoqa writes them.

The config is TOML (docs/night.md); paths in it are relative to the config file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from neoqa import __version__
from neoqa.data.store import SheetSet
from neoqa.decide.score import MANIFEST, score
from neoqa.errors import NeoqaError
from neoqa.ingest.layout import ingest
from neoqa.models import persistence as persist
from neoqa.outputs import atomic_output, check_output, command, file_mark, read_json, read_marker, write_marker

# section -> field -> (type, required)
_FIELDS = {
    "input": {"data": (str, False), "ingest": (str, False), "survey": (str, False)},
    "model": {"path": (str, True), "recall": (float, True)},
    "output": {"folder": (str, True)},
    "run": {"threads": (int, False), "workers": (int, False), "scheduler": (str, False)},
}
KIND = "night"


@dataclass(frozen=True)
class NightConfig:
    """A night's settings, validated: where the sheets are, the model and the recall its saved
    operating point must have been set for, the output folder, and how to run."""

    source: Path
    model: Path
    recall: float
    out: Path
    ingest: bool = False
    survey: str | None = None
    threads: int | None = None
    workers: int | None = None
    scheduler: str | None = None

    @classmethod
    def read(cls, path) -> "NightConfig":
        path = Path(path)
        try:
            doc = tomllib.loads(path.read_text())
        except OSError as e:
            raise NeoqaError(f"{path}: cannot read the config ({e.strerror})") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise NeoqaError(f"{path}: not valid TOML ({e})") from None
        values = {}
        for section in doc:
            if section not in _FIELDS:
                raise NeoqaError(f"{path}: unknown section [{section}] (expected {', '.join(_FIELDS)})")
        for section, fields in _FIELDS.items():
            got = doc.get(section, {})
            if not isinstance(got, dict):
                raise NeoqaError(f"{path}: [{section}] must be a table")
            for name in got:
                if name not in fields:
                    raise NeoqaError(f"{path}: [{section}] has an unknown field {name!r} "
                                     f"(expected {', '.join(fields)})")
            for name, (kind, required) in fields.items():
                if name not in got:
                    if required:
                        raise NeoqaError(f"{path}: [{section}] needs the field {name!r}")
                    continue
                v = got[name]
                ok = (isinstance(v, kind) and not isinstance(v, bool)) or (kind is float and isinstance(v, int)
                                                                          and not isinstance(v, bool))
                if not ok:
                    raise NeoqaError(f"{path}: [{section}] field {name!r} must be {_KIND_NAMES[kind]}, not {v!r}")
                values[(section, name)] = v
        data, folder = values.get(("input", "data")), values.get(("input", "ingest"))
        if (data is None) == (folder is None):
            raise NeoqaError(f"{path}: [input] needs exactly one of 'data' (a neoqa dataset) and 'ingest' "
                             "(a FITS-plus-tables folder)")
        recall = float(values[("model", "recall")])
        if not 0 < recall < 1:
            raise NeoqaError(f"{path}: [model] field 'recall' must be between 0 and 1, not {recall}")
        for name in ("threads", "workers"):
            if values.get(("run", name), 1) < 1:
                raise NeoqaError(f"{path}: [run] field {name!r} must be at least 1")
        if ("run", "workers") in values and ("run", "scheduler") in values:
            raise NeoqaError(f"{path}: [run] takes 'workers' (a local Dask cluster) or 'scheduler', not both")
        here = path.resolve().parent
        return cls(source=here / (data or folder), model=here / values[("model", "path")], recall=recall,
                   out=here / values[("output", "folder")], ingest=folder is not None,
                   survey=values.get(("input", "survey")), threads=values.get(("run", "threads")),
                   workers=values.get(("run", "workers")), scheduler=values.get(("run", "scheduler")))

    def digest(self) -> str:
        """What makes a night's results: its sheets, model, recall and folder (not how it runs,
        nor the file's comments), so a rerun of the same night resumes."""
        what = [str(self.source), self.ingest, self.survey, str(self.model), self.recall, str(self.out)]
        return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:16]


_KIND_NAMES = {str: "a string", int: "a whole number", float: "a number"}


def night(config_path, overwrite: bool = False, progress: bool = True, echo=print) -> dict:
    """Run (or resume) the night that ``config_path`` describes; returns its summary."""
    cfg = NightConfig.read(config_path)
    started = time.time()
    model, info = persist.load(cfg.model)
    point = model.operating_point
    if point is None:
        raise NeoqaError(f"{cfg.model}: no saved operating point; set one on labelled data with "
                         f"neoqa triage --model {cfg.model} --data LABELLED --recall {cfg.recall} --save")
    if abs(point.target_recall - cfg.recall) > 1e-12:
        raise NeoqaError(f"{config_path}: [model] recall is {cfg.recall} but the model's saved operating point was "
                         f"set for {point.target_recall}; set one for {cfg.recall} (neoqa triage --save) or change "
                         "the config")
    if cfg.ingest and not cfg.source.is_dir():       # bad input is refused before the folder exists
        raise NeoqaError(f"{cfg.source}: no such folder to ingest")
    if not cfg.ingest:
        SheetSet(cfg.source)
    existed = cfg.out.is_dir()
    fresh = not existed or not any(cfg.out.iterdir())
    _prepare(cfg, overwrite)
    steps = {}

    def step(name, run, where=None):
        t = time.time()
        value, did = run()
        steps[name] = {"did": did, "seconds": round(time.time() - t, 3)}
        echo(f"{name}: {did}" + (f" ({where})" if where else ""))
        return value

    try:
        data = step("sheets", lambda: _sheets(cfg, progress), cfg.out / "sheets" if cfg.ingest else cfg.source)
        m = step("scores", lambda: _scores(cfg, data, overwrite, progress), cfg.out / "scores")
        step("queues", lambda: (None, _queues(cfg.out)))
    except NeoqaError:
        if fresh:                                  # no half-made night left behind by bad input
            _empty(cfg.out)
            if not existed:
                cfg.out.rmdir()
        raise
    summary = {**file_mark(), "kind": KIND, "config": str(Path(config_path).resolve()), "config_digest": cfg.digest(),
               "model": info["model"], "model_id": m["model_id"], "operating_point": point.as_dict(),
               "data": str(data), "data_digest": m["data_digest"], "sheets": m["sheets"], "buckets": m["buckets"],
               "human_load": m["buckets"]["review"] / max(m["sheets"], 1), "steps": steps,
               "seconds": round(time.time() - started, 3), "command": command()}
    with atomic_output(cfg.out / "night.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def _prepare(cfg: NightConfig, overwrite: bool) -> None:
    """The night's folder: new, or this very night's (same config) to resume; another night's only
    with ``overwrite``, which empties it."""
    out = cfg.out
    check_output(out, overwrite=True, inputs=(cfg.model, cfg.source), folder=True)
    if out.is_dir() and any(out.iterdir()):
        mark = read_marker(out, KIND)
        if mark is None:
            raise NeoqaError(f"{out}: is not a night's folder neoqa wrote; choose another [output] folder")
        if mark.get("config_digest") != cfg.digest():
            if not overwrite:
                raise NeoqaError(f"{out}: holds a night run with another config (pass --overwrite to replace it)")
            _empty(out)
    out.mkdir(parents=True, exist_ok=True)
    write_marker(out, {"written_by": "neoqa", "neoqa_version": __version__, "kind": KIND,
                       "config_digest": cfg.digest()})


def _empty(folder: Path) -> None:
    for p in folder.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def _sheets(cfg: NightConfig, progress: bool) -> tuple[Path, str]:
    if not cfg.ingest:
        return cfg.source, "opened"
    target = cfg.out / "sheets"
    try:                                # a whole dataset in this night's folder (same config): done
        SheetSet(target)
        return target, "already ingested"
    except NeoqaError:
        pass
    ingest(cfg.source, target, survey=cfg.survey, overwrite=True, progress=progress)
    return target, "ingested"


def _scores(cfg: NightConfig, data: Path, overwrite: bool, progress: bool) -> tuple[dict, str]:
    m = score(cfg.model, data, cfg.out / "scores", overwrite=overwrite, progress=progress, scheduler=cfg.scheduler,
              workers=cfg.workers, threads=cfg.threads)
    return m, f"{m['made']} of {len(m['parts'])} parts made, {m['skipped']} already done"


def _queues(out: Path) -> str:
    """The review queue and the accepted sheets from the scores, remade only when they changed."""
    scores = out / "scores"
    m = read_json(scores / MANIFEST)
    made_of = [m.get("model_id"), m.get("threshold"), m.get("operating_point"),
               [(p["file"], p["shard_digest"]) for p in m.get("parts", [])]]
    manifest_digest = hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()[:16]
    targets = {"review": out / "review.parquet", "accept": out / "accepted.parquet"}
    if all(_made_from(p) == manifest_digest for p in targets.values()):
        return "already made from these scores"
    table = pq.read_table(scores)
    counts = {}
    for name, path in targets.items():
        rows = table.filter(pc.equal(table.column("bucket"), name))
        rows = rows.take(pa.array(np.argsort(-rows.column("probability").to_numpy(), kind="stable")))
        meta = {**file_mark(), "scores_manifest": manifest_digest, "bucket": name}
        with atomic_output(path, overwrite=True) as tmp:
            pq.write_table(rows.replace_schema_metadata(meta), tmp)
        counts[name] = rows.num_rows
    return f"{counts['review']:,} sheets to review, {counts['accept']:,} accepted"


def _made_from(path: Path) -> str | None:
    try:
        return (pq.read_schema(path).metadata or {}).get(b"scores_manifest", b"").decode() or None
    except (OSError, pa.ArrowInvalid):
        return None
