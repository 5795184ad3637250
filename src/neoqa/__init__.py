"""neoqa: automatic, explainable vetting of moving-object QA sheets.

The names a notebook needs (docs/api.md), loaded when first used, so ``import neoqa`` stays light
and the command line pays only for what it runs:

    data       open_dataset, SheetBatch, split
    simulate   SimConfig, simulate_batch, simulate_dataset
    models     model_names, make_model, train_model, load_model, capabilities
    judging    evaluate_model, evaluate_split, recall_threshold, triage_thresholds, set_operating_point, buckets
    explain    attribute
    figures    sheet_figure, explanation_figure, weights_figure, zoo_figures, robustness_figure,
               learning_curve_figure, stream_figure, suspects_figure (matplotlib Figures)

(The subpackages' own names, ``neoqa.simulate`` and ``neoqa.evaluate``, stay the packages.)
"""

__version__ = "0.9.0"

# public name -> (module, attribute)
_API = {
    "open_dataset": ("neoqa.data.store", "SheetSet"),
    "SheetBatch": ("neoqa.data.sheets", "SheetBatch"),
    "split": ("neoqa.data.splits", "train_validation_test"),
    "SimConfig": ("neoqa.simulate.config", "SimConfig"),
    "simulate_dataset": ("neoqa.simulate.runner", "simulate"),
    "simulate_batch": ("neoqa.simulate.runner", "simulate_batch"),
    "model_names": ("neoqa.models.registry", "names"),
    "make_model": ("neoqa.models.registry", "make"),
    "train_model": ("neoqa.train.fit", "train_model"),
    "load_model": ("neoqa.models.persistence", "load"),
    "capabilities": ("neoqa.models.base", "capabilities"),
    "evaluate_model": ("neoqa.evaluate.evaluation", "evaluate"),
    "evaluate_split": ("neoqa.evaluate.evaluation", "evaluate_split"),
    "recall_threshold": ("neoqa.evaluate.thresholds", "recall_threshold"),
    "triage_thresholds": ("neoqa.decide.triage", "triage_thresholds"),
    "set_operating_point": ("neoqa.decide.triage", "set_operating_point"),
    "buckets": ("neoqa.decide.triage", "buckets"),
    "attribute": ("neoqa.explain.saliency", "attribute"),
    "sheet_figure": ("neoqa.explain.sheet", "sheet_figure"),
    "explanation_figure": ("neoqa.explain.saliency", "explanation_figure"),
    "weights_figure": ("neoqa.explain.saliency", "weights_figure"),
    "zoo_figures": ("neoqa.runs.zoo", "zoo_figures"),
    "robustness_figure": ("neoqa.shift.robustness", "robustness_figure"),
    "learning_curve_figure": ("neoqa.shift.transfer", "learning_curve_figure"),
    "stream_figure": ("neoqa.shift.online", "stream_figure"),
    "suspects_figure": ("neoqa.shift.suspects", "suspects_figure"),
}
__all__ = ["__version__", *_API]


def __getattr__(name):
    if name not in _API:
        raise AttributeError(f"module 'neoqa' has no attribute {name!r}")
    import importlib

    module, attr = _API[name]
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__():
    return sorted(__all__)
