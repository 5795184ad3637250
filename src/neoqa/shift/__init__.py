"""Distribution shift: sensor corruptions, transfer to a new survey, online learning, suspect labels."""
