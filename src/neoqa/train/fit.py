"""Training: deterministic split, fit, validation threshold, save."""

from __future__ import annotations

import time

import numpy as np

from neoqa.models import persistence as persist
from neoqa.errors import NeoqaError
from neoqa.models.calibration import Calibrated, apply_temperature, best_threshold, fit_temperature
from neoqa.models.registry import make, require
from neoqa.outputs import check_output
from neoqa.parallel import ddp
from neoqa.data.splits import TRAIN, VAL, split_of
from neoqa.data.store import SheetSet


def labelled_splits(batch):
    """(train, validation) sheets with known labels."""
    split = split_of(batch.sheet_id)
    known = batch.label >= 0
    train = batch.select(np.flatnonzero((split == TRAIN) & known))
    val = batch.select(np.flatnonzero((split == VAL) & known))
    if len(train) == 0 or len(np.unique(train.label)) < 2:
        raise NeoqaError("the training split needs labelled sheets of both classes")
    return train, val


def fit_and_save(name: str, batch, out, seed: int = 0, progress: bool = True, overwrite: bool = False,
                 inputs=(), where="data", source: dict | None = None) -> dict:
    """Fit model ``name`` on ``batch``'s training split, calibrate and threshold it on the validation
    split, save it to ``out`` (``source``: where the data came from, ``SheetSet.source``)."""
    check_output(out, overwrite=overwrite, inputs=inputs, folder=True)      # before the fit, not after
    require(name, batch.obs_scalar_names, where)
    train, val = labelled_splits(batch)
    model = make(name, random_state=seed)
    processes = ddp.world()
    if processes > 1 and model.view != "sets":
        raise NeoqaError(f"torchrun trains the set models only (basic_sneon, sneon, sneon_soft, set_transformer), "
                         f"not {name!r}: run it as plain neoqa train")
    t0 = time.perf_counter()
    model.fit(train, validation=val, progress=progress and ddp.rank() == 0)
    fit_seconds = time.perf_counter() - t0
    threshold, temperature, validation = 0.5, 1.0, None
    if len(val) and len(np.unique(val.label)) == 2:
        p_val = model.predict_proba(val)[:, 1]
        temperature = fit_temperature(val.label, p_val)
        p_cal = apply_temperature(p_val, temperature)
        threshold = best_threshold(val.label, p_cal)
        validation = {"sheets": int(len(val)), "accuracy": float(np.mean((p_cal >= threshold) == (val.label == 1))),
                      "threshold": threshold}
    if ddp.rank() == 0:                          # every rank holds the same weights; one writes
        persist.save(model, out, name, threshold, train,
                     extra={"fit_seconds": fit_seconds, "seed": seed, "n_parameters": int(model.n_parameters()),
                            "calibration": {"method": "temperature", "temperature": temperature},
                            "processes": processes, "validation": validation},
                     overwrite=overwrite, inputs=inputs, source=source)
    ddp.barrier()
    return {"model": Calibrated(model, temperature, threshold), "threshold": threshold, "fit_seconds": fit_seconds,
            "validation": validation}


def train_model(name: str, batch, out, seed: int = 0, progress: bool = False, overwrite: bool = False):
    """Train registry model ``name`` on ``batch``'s training split (its validation split picks the
    temperature and threshold), save it to the folder ``out``, and return it as loaded back:
    (model, info), what ``load_model`` gives."""
    fit_and_save(name, batch, out, seed, progress=progress, overwrite=overwrite)
    return persist.load(out)


def train_path(name: str, data, out, seed: int = 0, overwrite: bool = False) -> dict:
    """``fit_and_save`` from a dataset on disk; its summary (threshold, fit time, validation accuracy)."""
    make(name)                                   # an unknown name fails before the data is read
    ds = SheetSet(data)
    return fit_and_save(name, ds.read(), out, seed, overwrite=overwrite, inputs=(data,), where=str(data),
                        source=ds.source() if ddp.rank() == 0 else None)
