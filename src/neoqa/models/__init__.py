"""The model registry: one name per model; the CLI, configs and reports use the names."""

from neoqa.models.registry import MODELS, make

__all__ = ["MODELS", "make"]
