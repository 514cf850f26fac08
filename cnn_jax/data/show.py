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
  arrays = data.splits["train"]
  count = len(arrays["image"])
  pick = np.random.default_rng(seed).choice(count, min(num_images, count), replace=False)
  batch = {k: v[pick] for k, v in arrays.items() if k in ("image", "label")}
  augment = data.augmenter(config, {"image": "image", "label": "label"})
  if augment is not None:
    batch = {k: np.asarray(v) for k, v in jax.jit(augment)(jax.random.PRNGKey(seed),
                                                           batch).items()}
  x, targets = batch["image"], batch["label"]
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
