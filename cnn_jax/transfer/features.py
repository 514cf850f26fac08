"""Feature extraction: a frozen base runs once over each split; a new head trains on its output.

The fast route of the transfer-learning notes (Chollet's step 3): the convolutional base of a
trained run is applied to every image of the train, validation and test splits in inference
mode, its feature maps are cached on disk, and a small classifier trains on them as on
images, with the metrics, figures and report of any classification run.

``task.name = "feature_classification"`` with the options

* ``base_run``: the workdir of the run whose network is the base (e.g. the study's
  pretraining run); its own input normalization is applied to the images first;
* ``checkpoint``: which of its checkpoints (``"best"``, ``"latest"`` or a step);
* or, instead of a run, ``base_weights``: a weight file (Keras ``.h5``, torchvision state
  dict) of the registered model ``base_model`` at its default options (ImageNet's VGG16:
  ``base_model="vgg16"``), read by :func:`cnn_jax.transfer.init_from.weight_file_variables`
  (``base_reverse_channels`` as ``model.init_reverse_channels``); this run's own
  normalization (``dataset.mean``/``std``) is applied to the images first;
* ``layer``: which entry of the base's ``features`` dict (``"stage3"``, ``"pre_logits"``);
  empty for its last stage;
* ``cache_dir``: where the features are cached (default ``~/.cache/cnn_jax/features``).

A split's cache file is named by a sha256 of the base's variables, the layer, the input
normalization and the split's images, so a changed base or different data never reads stale
features, and any later run (another workdir, the ``eval`` command) with the same base and
data reads them back instead of running the base. The model (``config.model``) takes the
feature maps ``[N, h, w, c]`` as its input, e.g. ``simple_cnn`` with ``num_blocks=0``:
flatten, dense, dropout, output. The ``augment`` section is ignored: augmenting needs the
base in the loop (the end-to-end route, ``optimizer.param_groups`` freezing the base).
"""

import dataclasses
import hashlib
import os
import time
from typing import Callable

import jax
import numpy as np
from flax import traverse_util

from cnn_jax.config import atomic_write
from cnn_jax.data.augment import normalize
from cnn_jax.data.local_files import DEFAULT_CACHE_DIR
from cnn_jax.errors import ConfigError
from cnn_jax.models import create
from cnn_jax.tasks.base import TASKS
from cnn_jax.tasks.classification import ClassificationTask
from cnn_jax.transfer.init_from import weight_file_variables

CACHE_FORMAT = 1  # bump when the cached arrays change meaning


def variables_digest(variables: dict) -> str:
  """sha256 (hex) over the paths, shapes, dtypes and bytes of a network's variables
  (``{"params": ..., "batch_stats": ...}``)."""
  digest = hashlib.sha256()
  for collection, tree in sorted(variables.items()):
    for path, leaf in sorted(traverse_util.flatten_dict(tree).items()):
      array = np.asarray(leaf)
      digest.update(f"{collection}/{'/'.join(path)}{array.dtype}{array.shape}".encode())
      digest.update(np.ascontiguousarray(array).tobytes())
  return digest.hexdigest()


def extract(forward: Callable, normalization: tuple | None, images: np.ndarray, layer: str,
            batch_size: int = 256) -> np.ndarray:
  """``features[layer]`` of the base for ``images [N, H, W, C]`` in [0, 1] (normalized by
  ``(mean, std)`` if given): float32 ``[N, ...]``. ``forward``: ``[B, H, W, C] -> features``
  (a dict of maps), in inference mode."""

  @jax.jit
  def run(x):
    return forward(x if normalization is None else normalize(x, normalization))[layer]

  return np.concatenate([np.asarray(run(images[i:i + batch_size]))
                         for i in range(0, len(images), batch_size)]).astype(np.float32)


def last_stage(forward: Callable, image_shape: tuple[int, ...]) -> str:
  """The name of the base's last ``stageN`` feature map."""
  features = jax.eval_shape(forward, jax.ShapeDtypeStruct((1, *image_shape), np.float32))
  stages = sorted((k for k in features if k.startswith("stage")), key=lambda k: int(k[5:]))
  if not stages:
    raise ConfigError(f"The base network has no stage feature maps (it has "
                      f"{', '.join(features)}); set task.layer to one of them.")
  return stages[-1]


@dataclasses.dataclass
class Extraction:
  """How one split's features were obtained: from the cache or by running the base."""
  path: str
  from_cache: bool
  seconds: float


@TASKS.register("feature_classification")
class FeatureClassificationTask(ClassificationTask):
  """Classification of the cached feature maps of a frozen base (see the module docstring)."""
  name = "feature_classification"
  options = {"base_run": "", "checkpoint": "best", "base_weights": "", "base_model": "",
             "base_reverse_channels": False, "layer": "", "cache_dir": ""}

  def load_base(self, data) -> tuple[Callable, dict, tuple | None]:
    """``(forward, variables, normalization)`` of the frozen base: ``forward`` maps images
    ``[B, H, W, C]``, normalized by ``(mean, std)`` (or None), to its feature maps, in
    inference mode."""
    if self.opts["base_weights"]:
      if not self.opts["base_model"]:
        raise ConfigError("task.base_weights is set but task.base_model is empty: name the "
                          "registered model the file holds, e.g. 'vgg16'.")
      model = create(self.opts["base_model"])
      variables = weight_file_variables(  # the classifier is not used (nor needed in it)
          self.opts["base_model"], self.opts["base_weights"], {},
          bool(self.opts["base_reverse_channels"]), skip=("head",))
      forward = lambda x: model.apply(variables, x, train=False)[1]  # noqa: E731
      return forward, variables, data.normalization
    if not self.opts["base_run"]:
      raise ConfigError("task.base_run and task.base_weights are empty: set base_run to the "
                        "workdir of the run whose network is the frozen base (or base_weights "
                        "to a weight file).")
    session, state, _, _ = self.load_run(self.opts["base_run"], str(self.opts["checkpoint"]))
    net = state.nets["net"]
    forward = lambda x: net.apply(x, train=False)[0][1]  # noqa: E731
    return forward, {"params": net.params, **net.collections}, session.data.normalization

  def select_data(self, data):
    """Replaces every split's images by the base's features (cached); keeps the images for
    the figures."""
    forward, variables, normalization = self.load_base(data)
    layer = self.opts["layer"] or last_stage(forward, data.image_shape)
    cache_dir = os.path.expanduser(self.opts["cache_dir"]
                                   or os.path.join(DEFAULT_CACHE_DIR, "features"))
    weights = variables_digest(variables)
    self.images = {split: arrays["image"] for split, arrays in data.splits.items()}
    self.extraction = {}
    splits = {}
    for split, arrays in data.splits.items():
      key = hashlib.sha256(f"{CACHE_FORMAT}{weights}{layer}{normalization}".encode())
      key.update(np.ascontiguousarray(arrays["image"]).tobytes())
      path = os.path.join(cache_dir, f"features-{key.hexdigest()[:24]}.npz")
      start = time.perf_counter()
      from_cache = os.path.exists(path)
      if from_cache:
        with np.load(path) as cached:
          features = cached["features"]
      else:
        features = extract(forward, normalization, arrays["image"], layer)
        os.makedirs(cache_dir, exist_ok=True)
        with atomic_write(path, "wb") as f:
          np.savez(f, features=features)
      self.extraction[split] = Extraction(path, from_cache, time.perf_counter() - start)
      splits[split] = {**arrays, "image": features}
    self.image_shape = splits["train"]["image"].shape[1:]
    self.normalize = self.augment = None
    return dataclasses.replace(data, splits=splits, normalization=None)

  def figures(self, state, data, split, results, outputs, out_dir):
    """The classification figures, the misclassified examples shown as the images."""
    images = {**data.splits[split], "image": self.images[split]}
    return super().figures(state, dataclasses.replace(data, splits={**data.splits, split: images}),
                           split, results, outputs, out_dir)
