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
    # procedural scenes with masks and boxes (cnn_jax.data.scenes), built on the fly; 10% of
    # the training scenes for validation, the test scenes from their own seed
    "shapes": {"name": "shapes", "num_train": 2000, "num_test": 500, "image_size": 64,
               "max_objects": 4, "seed": 0, "val_fraction": 0.1, "test_fraction": 0.0},
    # MNIST digits on CIFAR-10 photos, from mnist.npz and cifar10_jpeg.npz in the data
    # directory (the decoded CIFAR images are cached in cache_dir)
    "mnist_scenes": {"name": "mnist_scenes", "num_train": 2000, "num_test": 500,
                     "image_size": 64, "max_digits": 3, "seed": 0, "data_dir": "",
                     "cache_dir": "", "decode_workers": 2, "val_fraction": 0.1,
                     "test_fraction": 0.0},
    # CIFAR-10 (cifar10_jpeg.npz) as the transfer-learning study uses it: its eight classes
    # other than cat and dog to pretrain a base (CIFAR's test images of those classes for
    # testing), and cats vs dogs at the notes' sizes, all from CIFAR's training images
    # (stratified: 1000 + 1000 train, 500 + 500 validation, 500 + 500 test)
    "cifar10_no_catdog": {"name": "cifar10_jpeg", "file": "cifar10_jpeg.npz", "data_dir": "",
                          "cache_dir": "", "decode_workers": 2, "image_size": 0,
                          "resize": "bilinear", "classes": ("airplane", "automobile", "bird",
                                                            "deer", "frog", "horse", "ship",
                                                            "truck"),
                          "val_fraction": 2000, "test_fraction": 0.0},
    "cifar10_catdog": {"name": "cifar10_jpeg", "file": "cifar10_jpeg.npz", "data_dir": "",
                       "cache_dir": "", "decode_workers": 2, "image_size": 0, "resize": "bilinear",
                       "classes": ("cat", "dog"), "val_fraction": 1000, "test_fraction": 1000,
                       "train_subset": 2000},
    # a folder of one subfolder per class (dataset.directory), split as the notes' 4,000
    # cats and dogs: half for training, a quarter each for validation and test
    "image_folder": {"name": "image_folder", "directory": "", "image_size": 150, "channels": 3,
                     "center_crop": True, "skip_corrupt": False, "decode_workers": 2,
                     "test_fraction": 0.25, "val_fraction": 1 / 3},
}


def dataset_preset(name: str, **overrides) -> ml_collections.ConfigDict:
  """The ``dataset`` section of preset ``name`` (digits, mnist, fashion_mnist, shapes,
  mnist_scenes, cifar10_no_catdog, cifar10_catdog, image_folder) with ``overrides``;
  ``image_size=0`` keeps the native size."""
  if name not in _PRESETS:
    raise ConfigError(f"Unknown dataset preset {name!r}; known: {', '.join(_PRESETS)}.")
  return ml_collections.ConfigDict({**_PRESETS[name], **overrides})
