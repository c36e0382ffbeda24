"""Engine factories of the river experiments (named by configs/river_*.py)."""
