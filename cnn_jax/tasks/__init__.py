"""Tasks: what a task adds to the shared loop (loss, metrics, step functions)."""
