"""Ready-made ``dataset`` config sections for the datasets experiments use most, so that an
experiment file (and its CI-sized variant) names a dataset in one line. Every key can still
be overridden with ``--config.dataset.KEY=VALUE``."""

import ml_collections

from cnn_jax.errors import ConfigError

_PRESETS = {
    # scikit-learn's bundled 8x8 digits: no download, 1,797 images; 20% test, 10% validation.
    "digits": {"name": "digits", "image_size": 0, "resize": "bilinear", "val_fraction": 0.125,
               "test_fraction": 0.2},
    # the .npz files of ../shared/data (read from dataset.data_dir or $CNN_JAX_DATA_DIR)
    "mnist": {"name": "npz", "file": "mnist.npz", "data_dir": "", "image_size": 0,
              "resize": "bilinear", "val_fraction": 5000, "test_fraction": 0.0},
    "fashion_mnist": {"name": "npz", "file": "fashion_mnist.npz", "data_dir": "", "image_size": 0,
                      "resize": "bilinear", "val_fraction": 5000, "test_fraction": 0.0},
}


def dataset_preset(name: str, **overrides) -> ml_collections.ConfigDict:
  """The ``dataset`` section of preset ``name`` (digits, mnist, fashion_mnist) with
  ``overrides``; ``image_size=0`` keeps the native size."""
  if name not in _PRESETS:
    raise ConfigError(f"Unknown dataset preset {name!r}; known: {', '.join(_PRESETS)}.")
  return ml_collections.ConfigDict({**_PRESETS[name], **overrides})
