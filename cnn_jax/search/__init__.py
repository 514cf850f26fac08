"""Hyperparameter search with optuna: search spaces (``space``), resumable and parallel
studies whose trials are normal training runs (``study``), and their tables, plots and
best experiment file (``report``)."""
