"""The paper itself: its constants and published numbers (`facts`), the network, the
losses, the schedules, the authors' TF1 checkpoints; nothing here reads a profile."""
