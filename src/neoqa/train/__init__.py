"""Training: the deterministic split, the fit, the validation threshold and temperature, saving."""
