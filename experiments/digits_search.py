"""The course notes' comparison problem: the simple CNN on scikit-learn's digits, searched
over learning rate x weight decay x dropout x width (``get_search_space``).

The notes teach grid search, random search (better when only a few hyperparameters matter:
it tries many more distinct values of each; Bergstra & Bengio, JMLR 2012) and sequential
model-based optimization (TPE: Bergstra et al., NeurIPS 2011). Each trial is a short run of
``digits_simple_cnn.py``; the search maximizes its validation accuracy.

  python -m cnn_jax search --config experiments/digits_search.py --study-dir runs/digits_search \\
      --sampler tpe --trials 40 --pruner median
  python -m cnn_jax search-report --study-dir runs/digits_search

``experiments/digits_search.py:ci`` is a CI-sized variant (two short epochs, small nets).
"""

import os

import ml_collections

from cnn_jax.config import load_config
from cnn_jax.errors import ConfigError
from cnn_jax.search.space import choice, log_uniform, uniform

_BASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "digits_simple_cnn.py")


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  config = load_config(_BASE)
  config.train.epochs = 4
  config.train.progress = False
  config.train.keep_checkpoints = 1
  if variant == "ci":
    config.train.epochs = 2
    config.train.num_devices = 1
    config.train.batch_size = 64
    config.model.base_channels = 4
    config.model.dense_units = (16,)
  elif variant:
    raise ConfigError(f"digits_search.py has no variant {variant!r}; use the file alone or "
                      "digits_search.py:ci.")
  return config


def get_search_space() -> dict:
  return {
      "optimizer.learning_rate": log_uniform(1e-3, 1.0, grid=4),
      "optimizer.weight_decay": log_uniform(1e-6, 1e-2, grid=3),
      "model.dropout_rate": uniform(0.0, 0.7, grid=3),
      "model.base_channels": choice(4, 8, 16, 32),
  }
