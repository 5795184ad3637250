"""The models: one contract (``base``), one registry (``registry``), calibration, persistence, and
the families, each registering its models: fixed-length pipelines and trees (``fixed``), one model
per length (``multi``), set networks (``sets``), and the ensemble (``ensemble``)."""

from neoqa.models import ensemble, fixed, multi, sets  # noqa: F401  (they register the models)
