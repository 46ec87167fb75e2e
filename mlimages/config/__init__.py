"""Parameters (defaults from `paper.facts`, a profile, overrides), the run layout, stage
fingerprints and preflight checks."""
