"""Set models: the networks (``networks``), their one training loop (``loop``) and the scikit-learn-style
model that registers them (``model``)."""

from neoqa.models.sets import model  # noqa: F401  (registers the set models)
