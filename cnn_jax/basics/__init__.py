"""Convolution basics from the course notes: arithmetic, padding, filters, receptive fields.

* :mod:`cnn_jax.basics.arithmetic`: output sizes (``N_out = floor((N_in + 2p - k) / s) + 1``),
  ``same``/``valid`` padding, transposed convolutions, parameter counts.
* :mod:`cnn_jax.basics.padding`: zeros, replicate and reflect padding.
* :mod:`cnn_jax.basics.filters`: the classic 3x3 kernels and :func:`apply_filter`.
* :mod:`cnn_jax.basics.receptive_field`: receptive field, jump and start of every array a
  traced function computes.
"""
