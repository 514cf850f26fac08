"""PNG figures (matplotlib, no display needed), one module per kind of task.

* :mod:`~cnn_jax.figures.classification`: learning curves, confusion matrix, ROC/PR,
  per-class bars, image grids and misclassified examples.
"""
