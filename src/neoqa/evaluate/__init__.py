"""Judging a model: the paper's metrics, thresholds for a target recall, evaluation on a split,
the tables and plots of a comparison."""
