"""``show-data``: a PNG grid of augmented training samples, exactly as the train step sees
them (before normalization)."""

import os

import jax
import ml_collections
import numpy as np

from cnn_jax import data as data_lib


def show_data(config: ml_collections.ConfigDict, out_path: str, num_images: int = 24,
              seed: int = 0) -> str:
  """Writes a grid of ``num_images`` training images after ``config.augment``.

  Captions give the label (the dominant one and its weight under mixup/cutmix).
  """
  data = data_lib.prepare(config, workdir=None)
  images, labels = data.splits["train"]
  pick = np.random.default_rng(seed).choice(len(labels), min(num_images, len(labels)),
                                            replace=False)
  x, y = images[pick], labels[pick]
  augment = data_lib.augmenter(config, data.num_classes)
  targets = y
  if augment is not None:
    x, targets = jax.jit(augment)(jax.random.PRNGKey(seed), x, y)
    x, targets = np.asarray(x), np.asarray(targets)
  names = data.class_names
  if targets.ndim == 2:  # soft labels
    captions = [f"{names[int(t.argmax())]} ({t.max():.2f})" for t in targets]
  else:
    captions = [names[int(t)] for t in targets]
  from cnn_jax.figures.classification import plot_image_grid
  os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
  section = config.get("augment")
  what = ", ".join(f"{k}={v}" for k, v in section.items() if v) if section else "none"
  return plot_image_grid(x, captions, out_path,
                         title=f"{config.dataset.name} training samples, augmentation: {what}")
