"""Plumbing a learner does not need to read: atomic files, run directories and resuming,
devices and memory format, and torch.distributed helpers."""
