"""Data: sources -> stratified splits -> preprocessing -> batches.

``prepare(config, workdir)`` is the one entry point the train loop and the eval
command use; it returns a :class:`PreparedData`.
"""

import dataclasses
from typing import Callable

import ml_collections
import numpy as np

# image_folder, local_files and scenes register their sources on import.
from cnn_jax.data import (image_folder, local_files, preprocess, scenes, sources,  # noqa: F401
                          splits)
from cnn_jax.data import domain_pairs  # noqa: F401  (mnist_m, mnist_mnistm, digits_colour_pair)


@dataclasses.dataclass
class PreparedData:
  """Model-ready splits.

  Attributes:
    splits: ``{"train"|"val"|"test": {key: array [N, ...]}}``; ``"image"`` is float32
      ``[N, H, W, C]`` in [0, 1], other keys as the source gives them (``"label"`` int32
      ``[N]``, ``"mask"``, ``"boxes"``, ...; see :class:`sources.ArrayData`).
    class_names: one name per class.
    indices: the chosen indices into the source arrays (as saved in ``splits.npz``).
    normalization: ``(mean, std)`` applied on the device after augmentation, or None.
  """
  splits: dict[str, dict[str, np.ndarray]]
  class_names: list[str]
  indices: dict
  normalization: tuple | None = None

  @classmethod
  def synthetic(cls, image_shape: tuple[int, int, int], class_names: list[str],
                **arrays: np.ndarray) -> "PreparedData":
    """Data of the given shape with one zero training example (plus ``arrays``, one row
    each): enough to build a task for benchmarks and tests."""
    train = {"image": np.zeros((1,) + tuple(image_shape), np.float32), **arrays}
    return cls({"train": train, "val": train, "test": train}, list(class_names), {})

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.splits["train"]["image"].shape[1:])

  def sizes(self) -> dict[str, int]:
    return {name: len(arrays["image"]) for name, arrays in self.splits.items()}

  def normalizer(self) -> Callable | None:
    """``images -> (images - mean) / std`` for use inside jit, or None."""
    if self.normalization is None:
      return None
    from cnn_jax.data.augment import normalize
    stats = self.normalization
    return lambda images: normalize(images, stats)

  def augmenter(self, config: ml_collections.ConfigDict, kinds: dict[str, str]) -> Callable | None:
    """``(key, batch) -> batch`` from ``config.augment`` for batches with ``kinds``
    (``{key: "image" | "label" | "mask" | "boxes" | ...}``); None without an augment
    section. Integer labels become soft labels ``[B, K]`` under mixup/cutmix."""
    section = config.get("augment")
    if section is None:
      return None
    from cnn_jax.data.augment import make_augment
    return make_augment(section, kinds, num_classes=self.num_classes)

  def filter(self, split: str, keep: np.ndarray) -> None:
    """Keeps the rows of ``split`` where ``keep [N]`` (bool) is set."""
    self.splits[split] = {k: v[keep] for k, v in self.splits[split].items()}


def display_name(cfg: ml_collections.ConfigDict) -> str:
  """A dataset's name for titles: the file's stem for file sources (``mnist`` for
  ``npz`` + ``mnist.npz``), else ``dataset.name``."""
  import os
  if cfg.get("file") and cfg.name in ("npz", "idx"):
    return os.path.splitext(os.path.basename(cfg.file))[0]
  return cfg.name


def select_classes(data: sources.ArrayData, classes) -> sources.ArrayData:
  """Keeps only ``classes`` (indices or names), relabelled 0..n-1 in the given order."""
  from cnn_jax.errors import ConfigError
  index = []
  for c in classes:
    if isinstance(c, str) and c in data.class_names:
      index.append(data.class_names.index(c))
    elif isinstance(c, int) and 0 <= c < data.num_classes:
      index.append(c)
    else:
      raise ConfigError(f"dataset.classes: {c!r} is not a class of this dataset "
                        f"({', '.join(data.class_names)}).")
  lookup = np.full(data.num_classes, -1, np.int32)
  lookup[index] = np.arange(len(index), dtype=np.int32)

  def keep(arrays):
    if arrays is None:
      return None
    if "label" not in arrays:
      raise ConfigError("dataset.classes needs a dataset with labels.")
    rows = lookup[arrays["label"]] >= 0
    kept = {k: v[rows] for k, v in arrays.items()}
    kept["label"] = lookup[kept["label"]]
    return kept

  return sources.ArrayData(keep(data.train), keep(data.test),
                           [data.class_names[i] for i in index])


def prepare(config: ml_collections.ConfigDict, workdir: str | None) -> PreparedData:
  """Loads ``config.dataset``, splits it (reusing ``workdir/splits.npz``) and preprocesses it.

  The split is drawn with ``dataset.split_seed`` when the section sets one, else with the
  run's ``seed``: runs that differ only in ``seed`` then share their train/val/test images
  if they set the same split seed (so a run started from another one's weights is not
  tested on images the other trained on)."""
  data = sources.load(config.dataset)
  if config.dataset.get("classes"):
    data = select_classes(data, config.dataset.classes)
  split_seed = config.dataset.get("split_seed")
  chosen = splits.load_or_choose(data, config.dataset,
                                 config.seed if split_seed is None else split_seed, workdir)
  raw = splits.apply(data, chosen)
  ready = {name: {**arrays, "image": preprocess.to_model_input(arrays["image"], config.dataset)}
           for name, arrays in raw.items()}
  return PreparedData(ready, data.class_names, chosen, preprocess.normalization(config.dataset))
