"""Runs that tie the steps together: the model zoo, the main job and the HTML report."""
