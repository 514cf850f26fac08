"""Transfer learning: start from other weights, freeze or slow down parts of a network, train
heads on cached features, and the five-step cats-vs-dogs study.

* :mod:`~cnn_jax.transfer.param_groups`: ``optimizer.param_groups`` rules (frozen parts,
  learning-rate multipliers) over the model families' named groups.
* :mod:`~cnn_jax.transfer.init_from`: ``model.init_from`` (a weight file or another run)
  applied when a run starts fresh.
* :mod:`~cnn_jax.transfer.features`: the ``feature_classification`` task, a head trained on
  the cached outputs of a frozen base.
* :mod:`~cnn_jax.transfer.study`: ``python -m cnn_jax study transfer``.

The modules are imported where they are needed (the first three by the training code, which
thereby registers the ``feature_classification`` task; the study by the command line), so
this package imports nothing itself.
"""
