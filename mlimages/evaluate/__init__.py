"""The evaluation stage (notebook 06): the paper's metrics for every checkpoint, tags,
features."""
