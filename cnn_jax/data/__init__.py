"""Data: sources -> stratified splits -> preprocessing -> batches.

``prepare(config, workdir)`` is the one entry point the train loop and the eval
command use; it returns a :class:`PreparedData`.
"""

import dataclasses
from typing import Callable

import jax
import ml_collections
import numpy as np

# image_folder and local_files register their sources on import.
from cnn_jax.data import image_folder, local_files, preprocess, sources, splits  # noqa: F401


@dataclasses.dataclass
class PreparedData:
  """Model-ready splits.

  Attributes:
    splits: ``{"train"|"val"|"test": (images float32 [N, H, W, C] in [0, 1], labels int32
      [N])}``.
    class_names: one name per class.
    indices: the chosen indices into the source arrays (as saved in ``splits.npz``).
    normalization: ``(mean, std)`` applied on the device after augmentation, or None.
  """
  splits: dict[str, tuple[np.ndarray, np.ndarray]]
  class_names: list[str]
  indices: dict
  normalization: tuple | None = None

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def image_shape(self) -> tuple[int, int, int]:
    return tuple(self.splits["train"][0].shape[1:])

  def sizes(self) -> dict[str, int]:
    return {name: len(y) for name, (_, y) in self.splits.items()}

  def normalizer(self) -> Callable | None:
    """``images -> (images - mean) / std`` for use inside jit, or None."""
    if self.normalization is None:
      return None
    from cnn_jax.data.augment import normalize
    stats = self.normalization
    return lambda images: normalize(images, stats)


def augmenter(config: ml_collections.ConfigDict, num_classes: int) -> Callable | None:
  """``(key, images [B,H,W,C], labels [B]) -> (images, targets)`` from ``config.augment``.

  Targets stay int labels unless mixup/cutmix is on (then soft labels ``[B, K]``).
  None when the config has no ``augment`` section.
  """
  section = config.get("augment")
  if section is None:
    return None
  from cnn_jax.data.augment import make_augment
  augment = make_augment(section)
  mixes = bool(section.get("mixup_alpha") or section.get("cutmix_alpha"))

  def apply(key, images, labels):
    return augment(key, images, jax.nn.one_hot(labels, num_classes) if mixes else labels)

  return apply


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

  def keep(x, y):
    if x is None:
      return None, None
    mask = lookup[y] >= 0
    return x[mask], lookup[y[mask]]

  return sources.ArrayData.labelled(*keep(data.train_images, data.train_labels),
                                   *keep(data.test_images, data.test_labels),
                                   [data.class_names[i] for i in index])


def prepare(config: ml_collections.ConfigDict, workdir: str | None) -> PreparedData:
  """Loads ``config.dataset``, splits it (reusing ``workdir/splits.npz``) and preprocesses it."""
  data = sources.load(config.dataset)
  if config.dataset.get("classes"):
    data = select_classes(data, config.dataset.classes)
  chosen = splits.load_or_choose(data, config.dataset, config.seed, workdir)
  raw = splits.apply(data, chosen)
  ready = {name: (preprocess.to_model_input(x, config.dataset), y) for name, (x, y) in raw.items()}
  return PreparedData(ready, data.class_names, chosen, preprocess.normalization(config.dataset))
