"""The U-Net of ``shapes_unet.py`` on ``mnist_scenes``: one to three MNIST digits, randomly
scaled and placed, blended onto CIFAR-10 photos (64x64); eleven mask classes (background and
the digits 0-9, a digit's mask being its stroke). Real images: a harder benchmark than the
shapes. Reads mnist.npz and cifar10_jpeg.npz from the data directory (the CIFAR JPEGs are
decoded once into ``dataset.cache_dir``).

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/mnist_scenes_unet.py --workdir runs/mnist_scenes_unet

``:ci`` is CI-sized (32x32 scenes, a narrow network, seconds on a CPU once decoded).
"""

import ml_collections

from cnn_jax.config import train_section
from cnn_jax.data.augment import augment_config
from cnn_jax.data.presets import dataset_preset


def get_config(variant: str = "") -> ml_collections.ConfigDict:
  ci = variant == "ci"
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = dataset_preset("mnist_scenes", **(
      {"num_train": 320, "num_test": 64, "image_size": 32} if ci else {}))
  # The full run weighs background 0.1 in the cross-entropy: unweighted, the strokes (5.6% of
  # the pixels, split over ten classes) never won the argmax (test mIoU 0.086, all background);
  # weighted, 8 epochs gave 0.219 and 16 epochs 0.450, still rising (benchmarks/RESULTS.md).
  config.task = ml_collections.ConfigDict({"name": "segmentation",
                                           "loss": "cross_entropy+dice", "dice_weight": 1.0,
                                           "class_weights": () if ci else (0.1,) + (1.0,) * 10,
                                           "ignore_label": -1})
  config.augment = augment_config()  # no flips: mirrored digits are not digits
  # Upsampling as in shapes_unet.py: resize + 3x3 conv in the full run (2x2 transposed
  # convolutions painted a checkerboard on the shapes), the CI variant as the tests were sized.
  config.model = ml_collections.ConfigDict({"name": "unet", "depth": 2 if ci else 3,
                                            "base_width": 8 if ci else 16, "padding": "same",
                                            "upsample": "transpose" if ci else "resize_conv",
                                            "upsample_kernel": 2 if ci else 3,
                                            "use_batch_norm": True})
  config.optimizer = ml_collections.ConfigDict({"name": "adam", "learning_rate": 3e-3,
                                                "weight_decay": 0.0})
  config.schedule = ml_collections.ConfigDict({"name": "warmup_cosine", "warmup_epochs": 1})
  config.train = train_section(epochs=4 if ci else 16, batch_size=8 if ci else 16,
                               eval_batch_size=64 if ci else 250, log_every_steps=20)
  return config
