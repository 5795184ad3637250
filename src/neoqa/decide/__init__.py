"""Operational decisions: streaming scores and the three-way triage of tonight's sheets."""
