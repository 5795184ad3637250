"""neoqa: automatic, explainable vetting of moving-object QA sheets."""

__version__ = "0.6.0"
