"""LightningModules, one per task: they own losses, decoding in val/test, metrics and logging."""
