"""Training, synthetic data and evaluation of the low-light network (not needed at inference)."""
