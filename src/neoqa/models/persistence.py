"""A model is a folder: weights (skops for scikit-learn, safetensors for torch) plus
``model.json`` (name, parameters, schema, threshold, version, training-data fingerprint).

Loading never unpickles and never calls anything named in a file. A skops file is a zip of
``.npy`` arrays (read with ``allow_pickle=False``) and a JSON tree that says which object to
build from which parts. Before skops sees the file, neoqa reads that tree itself and refuses it
unless every node is a plain data node (object, dict, list, tuple, JSON value, dtype, array,
random state) and every object's class is on an exact list of the classes neoqa's models are
made of (``ALLOWED_CLASSES``): no functions, methods, ``functools.partial`` or reduce nodes,
no prefixes. Objects are rebuilt with ``cls.__new__`` and their attribute dict, so no
constructor or callable named by the file runs. Torch models are safetensors (arrays only) and
JSON. Every path inside a model folder stays inside it.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np

from neoqa import __version__
from neoqa.models.calibration import Calibrated, OperatingPoint
from neoqa.errors import NeoqaError
from neoqa.data.schema import schema_dict, schema_fingerprint
from neoqa.models import registry
from neoqa.models.base import capabilities
from neoqa.outputs import atomic_output, confined, read_json

MODEL_JSON = "model.json"
MODEL_CARD = "MODEL.md"
SKOPS_FILE = "model.skops"
MEMBERS_JSON = "members.json"
# skops node kinds that hold data only; FunctionNode, MethodNode, PartialNode, ReduceNode and
# OperatorFuncNode (which name callables) are never accepted.
DATA_NODES = {"ObjectNode", "DictNode", "ListNode", "TupleNode", "JsonNode", "TypeNode", "DTypeNode",
              "NdArrayNode", "RandomStateNode", "DefaultDictNode"}
# The exact classes a neoqa model folder holds: what the registered models' skops files contain,
# and no more (tests/test_safety.py compares this list with what the registered models write).
ALLOWED_CLASSES = {
    "ObjectNode": {
        "neoqa.models.fixed.FixedLengthModel", "neoqa.models.fixed.PipelineClassifier",
        "neoqa.models.fixed.SummaryModel", "neoqa.models.fixed._GammaRFF", "neoqa.models.multi.MultiLengthModel",
        "sklearn.pipeline.Pipeline", "sklearn.impute._base.SimpleImputer", "sklearn.preprocessing._data.StandardScaler",
        "sklearn.preprocessing._label.LabelBinarizer", "sklearn.preprocessing._label.LabelEncoder",
        "sklearn.calibration.CalibratedClassifierCV", "sklearn.calibration._CalibratedClassifier",
        "sklearn.calibration._SigmoidCalibration", "sklearn.linear_model._ridge.RidgeClassifier",
        "sklearn.kernel_approximation.Nystroem", "sklearn.neural_network._multilayer_perceptron.MLPClassifier",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer", "lightgbm.sklearn.LGBMClassifier",
        "lightgbm.basic.Booster"},
    "DictNode": {"builtins.dict"}, "ListNode": {"builtins.list"}, "TupleNode": {"builtins.tuple"},
    "JsonNode": {"builtins.str"}, "TypeNode": {"builtins.int", "builtins.str", "collections.OrderedDict", "numpy.int8"},
    "DTypeNode": {"numpy.dtype"}, "NdArrayNode": {"numpy.ndarray", "numpy.float64", "numpy.int64"},
    "RandomStateNode": {"numpy.random.mtrand.RandomState"}, "DefaultDictNode": {"collections.defaultdict"},
}
# model.json: the fields loading relies on, and their types
_INFO_FIELDS = {"model": str, "params": dict, "threshold": (int, float), "schema": dict}


def model_id(folder) -> str:
    """A model folder's identity: a digest of every file in it (names and bytes), so a score says
    exactly which model and operating point made it."""
    folder = Path(folder)
    h = hashlib.sha256()
    for p in sorted(q for q in folder.rglob("*") if q.is_file()):
        h.update(str(p.relative_to(folder)).encode() + b"\0")
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def data_schema(batch) -> dict:
    return schema_dict(batch.composite.shape[1], batch.composite.shape[-1], batch.sheet_scalar_names,
                       batch.obs_scalar_names)


def data_fingerprint(batch) -> str:
    h = hashlib.sha256()
    for s in batch.sheet_id:
        h.update(str(s).encode())
    h.update(np.ascontiguousarray(batch.label).tobytes())
    return h.hexdigest()[:16]


def save(model, folder, name: str, threshold: float, train_batch, extra: dict | None = None, attach=None,
         overwrite: bool = False, inputs=(), source: dict | None = None) -> Path:
    """Write the model folder atomically: weights, ``model.json`` and its model card ``MODEL.md``;
    ``attach(tmp_folder)`` adds files of its own (a replay buffer). ``source`` says where the
    training data came from (its path and digest), kept with the training data's summary."""
    from neoqa.outputs import provenance

    folder = Path(folder)
    schema = data_schema(train_batch)
    made = train_batch.meta.get("provenance") or {}
    info = {
        "model": name, "params": _jsonable(model.get_params(deep=False)), "threshold": float(threshold),
        "schema": schema, "schema_fingerprint": schema_fingerprint(schema), "neoqa_version": __version__,
        "needs": sorted(model.needs()) if hasattr(model, "needs") else [],
        "training_data": {"fingerprint": data_fingerprint(train_batch), "sheets": len(train_batch),
                          "survey": train_batch.meta.get("survey"), "channels": train_batch.meta.get("channels"),
                          "simulated": made.get("generator") == "neoqa.simulate", **(source or {})},
        "provenance": provenance(),
        **(extra or {}),
    }
    with atomic_output(folder, overwrite=overwrite, inputs=inputs, folder=True, kind="model") as tmp:
        save_weights(model, tmp)
        for name, text in _info_files(info):
            (tmp / name).write_text(text)
        if attach is not None:
            attach(tmp)
    return folder


def _info_files(info: dict) -> tuple:
    """(name, text) of ``model.json`` and its model card ``MODEL.md``."""
    from neoqa.models.card import model_card

    return (MODEL_JSON, json.dumps(info, indent=1, sort_keys=True) + "\n"), (MODEL_CARD, model_card(info))


def write_info(folder, info: dict) -> Path:
    """Replace a saved model's ``model.json`` (a new threshold or operating point) and its model
    card together, each atomically; returns the model.json path."""
    from neoqa.outputs import check_output

    folder = Path(folder)
    files = _info_files(info)
    for name, _ in files:                       # both may be replaced before either is
        check_output(folder / name, overwrite=True)
    for name, text in files:
        with atomic_output(folder / name, overwrite=True) as tmp:
            tmp.write_text(text)
    return folder / MODEL_JSON


def save_weights(model, folder: Path) -> None:
    """A fitted model's weights into ``folder``: each part of a composite model in a sub-folder
    of its own (as it would be saved alone) with ``members.json``; a model with weights of its own
    (safetensors) by itself; anything else as a skops file."""
    import skops.io as sio

    caps = capabilities(model)
    if "composite" in caps:
        meta = []
        for i, (name, part, extra) in enumerate(model.parts()):
            sub = folder / f"member-{i}-{name}"
            sub.mkdir()
            save_weights(part, sub)
            meta.append({"name": name, "folder": sub.name, "params": _jsonable(part.get_params(deep=False)), **extra})
        (folder / MEMBERS_JSON).write_text(json.dumps(meta, indent=1) + "\n")
    elif "own_weights" in caps:
        model.save_weights(folder)
    else:
        sio.dump(model, folder / SKOPS_FILE)


def load(folder):
    """(model, info) from a model folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NeoqaError(f"{folder}: no such model folder")
    path = folder / MODEL_JSON
    info = read_json(path, f"not a neoqa model folder (no {MODEL_JSON})")
    check_info(path, info)
    if info["model"] not in registry.names():
        raise NeoqaError(f"{path}: unknown model {info['model']!r}")
    base = load_weights(folder, info["model"], info["params"], path)
    cal = info.get("calibration") or {}
    op = info.get("operating_point")
    model = Calibrated(base, cal.get("temperature", 1.0) if cal.get("method", "temperature") == "temperature" else 1.0,
                       float(info["threshold"]), OperatingPoint.from_dict(op, str(path)) if op is not None else None)
    _smoke_test(model, info, folder)
    return model, info


def _smoke_test(model, info: dict, folder) -> None:
    """Score one blank sheet of the model's schema: a folder whose files pass every check but whose
    parts do not fit together (edited by hand, say) fails here, in one line, not later mid-run."""
    from neoqa.data.sheets import SheetBatch

    s = info["schema"]
    C, S, k = s["channels"], s["cutout_size"], 6
    zeros = np.zeros
    blank = SheetBatch(sheet_id=np.array(["blank"]), label=np.array([-1], np.int8), k=np.array([k], np.int32),
                       composite=zeros((1, C, S, S), np.float32),
                       sheet_scalars=zeros((1, len(s["sheet_scalars"])), np.float32),
                       cutouts=zeros((k, C, S, S), np.float32), obs_scalars=zeros((k, len(s["obs_scalars"])), np.float32),
                       ra=zeros(k), dec=zeros(k), mjd=np.arange(k, dtype=np.float64), band=zeros(k, np.int8),
                       mag=zeros(k, np.float32), sheet_scalar_names=tuple(s["sheet_scalars"]),
                       obs_scalar_names=tuple(s["obs_scalars"]), meta={"survey": (info.get("training_data") or {})
                                                                       .get("survey")})
    try:
        p = np.asarray(model.predict_proba(blank))
    except Exception as e:                   # anything at all: the parts do not make a working model
        raise NeoqaError(f"{folder}: the model's files do not make a working model "
                         f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})") from None
    if p.shape != (1, 2):
        raise NeoqaError(f"{folder}: the model's files do not make a working model (scores of shape {p.shape})")


def load_weights(folder: Path, name: str, params: dict, where) -> object:
    """The fitted model of registry name ``name`` from the weights in ``folder``."""
    skops_path = folder / SKOPS_FILE
    if skops_path.is_file():
        return load_skops(skops_path)
    model = registry.make(name)
    caps = capabilities(model)
    if not caps & {"composite", "own_weights"}:
        raise NeoqaError(f"{folder}: weights file {SKOPS_FILE} is missing")
    model.set_params(**checked_params(model, params, where))
    if "composite" in caps:
        return model.from_parts(_load_parts(folder))
    model.load_weights(folder)
    return model


def _load_parts(folder: Path) -> list:
    """A composite model's parts from ``members.json``: every entry checked, every sub-folder inside
    ``folder``, every part a registered model that is not itself composite."""
    path = folder / MEMBERS_JSON
    if not path.is_file():
        raise NeoqaError(f"{folder}: {MEMBERS_JSON} is missing")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise NeoqaError(f"{path}: not valid JSON") from None
    if not isinstance(meta, list) or not meta:
        raise NeoqaError(f"{path}: expected a non-empty list of members")
    parts = []
    for i, e in enumerate(meta):
        where = f"{path}: member {i}"
        if not isinstance(e, dict) or not all(isinstance(e.get(k), t) for k, t in
                                              (("name", str), ("folder", str), ("params", dict))):
            raise NeoqaError(f"{where}: fields 'name', 'folder' and 'params' are missing or of the wrong type")
        if e["name"] not in registry.names() or "composite" in capabilities(registry.make(e["name"])):
            raise NeoqaError(f"{where}: unknown member model {e['name']!r}")
        t = e.get("temperature")
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not np.isfinite(t) or t <= 0:
            raise NeoqaError(f"{where}: field 'temperature' must be a positive number")
        sub = confined(folder, e["folder"], where)
        if not sub.is_dir():
            raise NeoqaError(f"{where}: folder {e['folder']!r} is missing")
        parts.append((e["name"], load_weights(sub, e["name"], e["params"], where), {"temperature": float(t)}))
    return parts


def check_info(path, info: dict) -> None:
    """model.json's fields, with the types loading relies on, or one line naming the field."""
    for key, kind in _INFO_FIELDS.items():
        if key not in info:
            raise NeoqaError(f"{path}: field '{key}' is missing")
        if not isinstance(info[key], kind) or isinstance(info[key], bool):
            raise NeoqaError(f"{path}: field '{key}' has the wrong type ({type(info[key]).__name__})")
    if not 0 <= info["threshold"] <= 1:
        raise NeoqaError(f"{path}: field 'threshold' is {info['threshold']}, must be in [0, 1]")
    schema = info["schema"]
    for key, kind in (("channels", int), ("cutout_size", int), ("sheet_scalars", list), ("obs_scalars", list)):
        if not isinstance(schema.get(key), kind) or isinstance(schema.get(key), bool):
            raise NeoqaError(f"{path}: field 'schema.{key}' is missing or has the wrong type")
    cal = info.get("calibration")
    if cal is not None:
        t = cal.get("temperature") if isinstance(cal, dict) else None
        if not isinstance(t, (int, float)) or isinstance(t, bool) or not np.isfinite(t) or t <= 0:
            raise NeoqaError(f"{path}: field 'calibration.temperature' must be a positive number")
    if info.get("operating_point") is not None:
        OperatingPoint.from_dict(info["operating_point"], str(path))


def checked_params(model, params: dict, where) -> dict:
    """Stored constructor parameters: only the model's own, each of its default's type."""
    defaults = model.get_params(deep=False)
    out = {}
    for key, value in params.items():
        if key not in defaults:
            continue
        want = defaults[key]
        if isinstance(want, (list, tuple)) and isinstance(value, str):
            continue                           # stored by repr; the default stands
        if want is not None and value is not None and type(value) is not type(want) and not (
                isinstance(want, float) and type(value) is int):
            raise NeoqaError(f"{where}: parameter '{key}' is {value!r}, expected a {type(want).__name__}")
        out[key] = value
    return out


def load_skops(path: Path):
    """A skops file, after its whole tree has passed ``audit_skops``."""
    import skops.io as sio

    audit_skops(path)
    try:
        return sio.load(path, trusted=sio.get_untrusted_types(file=path))
    except Exception as e:                     # a tree that passed the audit but does not build
        raise NeoqaError(f"{path}: the model file does not load ({type(e).__name__}: {e})") from None


def skops_nodes(path: Path):
    """Every node of a skops file's tree that names a class: (loader, "module.Class", node)."""
    try:
        with zipfile.ZipFile(path) as z:
            tree = json.loads(z.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, OSError, json.JSONDecodeError, UnicodeDecodeError):
        raise NeoqaError(f"{path}: not a readable skops model file (truncated or corrupt)") from None
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        if "__loader__" in node:
            yield node.get("__loader__"), f"{node.get('__module__')}.{node.get('__class__')}", node
        stack.extend(v for v in node.values() if isinstance(v, (dict, list)))


def audit_skops(path: Path) -> None:
    """Refuse a skops file unless every node is a data node of an allowed class (see the module doc)."""
    for loader, name, node in skops_nodes(path):
        if loader not in DATA_NODES:
            raise NeoqaError(f"{path}: refuses to load a {loader} ({name}): model files hold data, not code")
        if name not in ALLOWED_CLASSES[loader]:
            raise NeoqaError(f"{path}: refuses to load type {name!r} (not on neoqa's allow-list)")
        if loader == "NdArrayNode" and node.get("type") != "numpy":
            raise NeoqaError(f"{path}: refuses an array stored as {node.get('type')!r}")


def conform(model, info: dict, batch, where):
    """``batch`` in the schema ``model`` was trained on (``info``'s): its scalars reordered, those the
    data lacks filled with NaN (each model takes it as missing; one note on stderr) unless
    the model reads them by name (``model.needs()``: refused, one line), those it never saw dropped.
    A different channel count or cutout size is refused."""
    want, got = info["schema"], data_schema(batch)
    if want == got:
        return batch
    for key in ("channels", "cutout_size"):
        if want[key] != got[key]:
            raise NeoqaError(f"{where}: {key} is {got[key]} but the model was trained on {want[key]}")
    needed = sorted(n for n in model.needs() if n not in got["obs_scalars"])
    if needed:
        raise NeoqaError(f"{where}: the model ({info['model']}) needs observation scalar(s) {', '.join(needed)}, "
                         "which the data lacks")
    imputed = [n for key in ("sheet_scalars", "obs_scalars") for n in want[key] if n not in got[key]]
    if imputed and (where, tuple(imputed)) not in _NOTED:       # once, not once per shard
        _NOTED.add((where, tuple(imputed)))
        print(f"note: {where}: no {', '.join(imputed)} in the data; the model takes "
              f"{'it' if len(imputed) == 1 else 'them'} as missing (docs/own-data.md)", file=sys.stderr)
    return replace(batch, sheet_scalars=_columns(batch.sheet_scalars, batch.sheet_scalar_names, want["sheet_scalars"]),
                   obs_scalars=_columns(batch.obs_scalars, batch.obs_scalar_names, want["obs_scalars"]),
                   sheet_scalar_names=tuple(want["sheet_scalars"]), obs_scalar_names=tuple(want["obs_scalars"]))


_NOTED: set = set()


def _columns(values: np.ndarray, names, want) -> np.ndarray:
    """The columns ``want`` of ``values`` (named ``names``), NaN for a name it lacks."""
    out = np.full((values.shape[0], len(want)), np.nan, np.float32)
    have = {n: i for i, n in enumerate(names)}
    for j, n in enumerate(want):
        if n in have:
            out[:, j] = values[:, have[n]]
    return out


def _jsonable(params: dict) -> dict:
    out = {}
    for k, v in params.items():
        if isinstance(v, (int, float, str, bool, type(None))):
            out[k] = v
        else:
            out[k] = repr(v)
    return out
