"""A model is a folder: weights (skops for scikit-learn, safetensors for torch) plus
``model.json`` (name, parameters, schema, threshold, version, training-data fingerprint).

Loading never unpickles: skops reconstructs only types on an allow-list (scikit-learn,
NumPy, SciPy and neoqa's own classes) and refuses anything else.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from . import __version__
from .calibration import Calibrated
from .errors import NeoqaError
from .schema import schema_dict, schema_fingerprint
from .store import atomic_path, read_json

MODEL_JSON = "model.json"
SKOPS_FILE = "model.skops"
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "scipy.", "neoqa.", "builtins.", "collections.", "lightgbm.")


def data_schema(batch) -> dict:
    return schema_dict(batch.composite.shape[1], batch.composite.shape[-1], batch.sheet_scalar_names,
                       batch.obs_scalar_names)


def data_fingerprint(batch) -> str:
    h = hashlib.sha256()
    for s in batch.sheet_id:
        h.update(str(s).encode())
    h.update(np.ascontiguousarray(batch.label).tobytes())
    return h.hexdigest()[:16]


def save(model, folder, name: str, threshold: float, train_batch, extra: dict | None = None, attach=None) -> Path:
    """Write the model folder atomically; ``attach(tmp_folder)`` adds files of its own (a replay buffer)."""
    import skops.io as sio

    folder = Path(folder)
    schema = data_schema(train_batch)
    info = {
        "model": name, "params": _jsonable(model.get_params(deep=False)), "threshold": float(threshold),
        "schema": schema, "schema_fingerprint": schema_fingerprint(schema), "neoqa_version": __version__,
        "training_data": {"fingerprint": data_fingerprint(train_batch), "sheets": len(train_batch),
                          "survey": train_batch.meta.get("survey"), "channels": train_batch.meta.get("channels")},
        **(extra or {}),
    }
    with atomic_path(folder, is_dir=True) as tmp:
        tmp.mkdir(exist_ok=True)
        if hasattr(model, "save_weights"):
            model.save_weights(tmp)
        else:
            sio.dump(model, tmp / SKOPS_FILE)
        (tmp / MODEL_JSON).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
        if attach is not None:
            attach(tmp)
    return folder


def load(folder):
    """(model, info) from a model folder."""
    from .models import registry

    folder = Path(folder)
    path = folder / MODEL_JSON
    info = read_json(path, f"not a neoqa model folder (no {MODEL_JSON})")
    if info.get("model") not in registry.MODELS:
        raise NeoqaError(f"{path}: unknown model {info.get('model')!r}")
    skops_path = folder / SKOPS_FILE
    if skops_path.exists():
        model = load_skops(skops_path)
    else:
        model = registry.make(info["model"])
        if not hasattr(model, "load_weights"):
            raise NeoqaError(f"{folder}: weights file {SKOPS_FILE} is missing")
        model.load_weights(folder, info)
    cal = info.get("calibration")
    if cal and cal.get("method") == "temperature":
        model = Calibrated(model, cal["temperature"])
    return model, info


def load_skops(path: Path):
    """A skops file, rebuilding only types on neoqa's allow-list."""
    import skops.io as sio

    untrusted = sio.get_untrusted_types(file=path)
    bad = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if bad:
        raise NeoqaError(f"{path}: refuses to load type {bad[0]!r} (not on neoqa's allow-list)")
    return sio.load(path, trusted=untrusted)


def check_schema(info: dict, batch, where) -> None:
    """Refuse data of another schema with a message that says what differs."""
    want, got = info["schema"], data_schema(batch)
    if want == got:
        return
    for key in ("channels", "cutout_size"):
        if want[key] != got[key]:
            raise NeoqaError(f"{where}: {key} is {got[key]} but the model was trained on {want[key]}")
    for key in ("sheet_scalars", "obs_scalars"):
        missing = [n for n in want[key] if n not in got[key]]
        extra = [n for n in got[key] if n not in want[key]]
        if missing or extra:
            what = f"lacks {missing[0]!r}" if missing else f"has unknown {extra[0]!r}"
            raise NeoqaError(f"{where}: {key} {what}; the model needs exactly its training schema")
        raise NeoqaError(f"{where}: {key} are in another order than the model's training schema")


def _jsonable(params: dict) -> dict:
    out = {}
    for k, v in params.items():
        if isinstance(v, (int, float, str, bool, type(None))):
            out[k] = v
        else:
            out[k] = repr(v)
    return out
