"""Metrics, one module per kind of task; below ``tasks`` so every task can use them.

* :mod:`~cnn_jax.metrics.classification`: masked, batched confusion-matrix statistics in
  JAX (accuracy, precision, recall, specificity, F1) and host-side ROC/PR curves.
"""
