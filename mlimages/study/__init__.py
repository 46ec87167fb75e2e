"""Running it all: the notebook runner, sweeps, the experiments beyond the paper (08)."""
