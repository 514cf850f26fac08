"""Evaluation: metrics, over/underfitting diagnosis, figures and the run report.

* :mod:`~cnn_jax.evaluate.metrics`: masked, batched classification metrics in JAX
  (``ClassificationStats``, ``update``, ``merge``, ``compute``) and host-side threshold
  curves (``binary_curves``, ``one_vs_rest_curves``, ``binary_metrics_at_threshold``).
* :mod:`~cnn_jax.evaluate.diagnose`: ``diagnose(history)`` -> over/underfitting verdict.
* :mod:`~cnn_jax.evaluate.plots`: PNG figures (learning curves, confusion matrix, ROC/PR,
  per-class bars, misclassified examples).
* :mod:`~cnn_jax.evaluate.report`: ``write_report`` -> ``report.md`` and ``report.html``.
"""

from cnn_jax.evaluate.diagnose import Diagnosis, diagnose
from cnn_jax.evaluate.metrics import (ClassificationStats, ScoreCollector, binary_curves,
                                      binary_metrics_at_threshold, compute, merge,
                                      one_vs_rest_curves, to_jsonable, update)
from cnn_jax.evaluate.report import write_report

__all__ = ["ClassificationStats", "Diagnosis", "ScoreCollector", "binary_curves",
           "binary_metrics_at_threshold", "compute", "diagnose", "merge",
           "one_vs_rest_curves", "to_jsonable", "update", "write_report"]
