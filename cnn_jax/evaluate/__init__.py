"""Evaluation of a run: the eval command, over/underfitting diagnosis and the report.

* :mod:`~cnn_jax.evaluate.run`: evaluating a checkpoint over a split, figures, JSON, report.
* :mod:`~cnn_jax.evaluate.diagnose`: ``diagnose(history)`` -> over/underfitting verdict.
* :mod:`~cnn_jax.evaluate.report`: ``write_report`` -> ``report.md`` and ``report.html``.

Metrics live in :mod:`cnn_jax.metrics` and figures in :mod:`cnn_jax.figures`, below the
tasks that use them.
"""

from cnn_jax.evaluate.diagnose import Diagnosis, diagnose
from cnn_jax.evaluate.report import write_report

__all__ = ["Diagnosis", "diagnose", "write_report"]
