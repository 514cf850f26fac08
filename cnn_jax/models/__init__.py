"""The model zoo: ``create(name, **options)`` and ``list_models(pattern)``.

Every model is a pure ``flax.linen`` Module with the same calling convention::

  logits, features = model.apply(variables, images, train=False)

* ``images``: float ``[B, H, W, C]`` (NHWC), usually in [0, 1] or normalized.
* ``logits``: float32 ``[B, num_classes]``.
* ``features``: a dict of intermediate outputs; it always has ``"pre_logits"``
  (``[B, D]``, the input of the classifier head) and per-stage feature maps
  (``"stage1"``, ``"stage2"``, ...), so feature extraction and transfer learning
  need no model surgery.
* ``train=True`` turns on dropout (rng stream ``"dropout"``) and batch-norm
  statistics updates (mutable collection ``"batch_stats"``).

Each family lives in its own module and registers its variants with
``@MODELS.register(name)``; a variant is a small function returning the Module.
"""

import dataclasses
import difflib

import flax.linen as nn

from cnn_jax.errors import ConfigError
from cnn_jax.registry import Registry

MODELS = Registry("model")

# Importing the family modules registers their variants.
from cnn_jax.models import (  # noqa: E402,F401
    alexnet, cifar_resnet, googlenet, inception_v3, lenet, nin, resnet, simple_cnn, vgg, xception)
from cnn_jax.models import autoencoder, cyclegan, gan  # noqa: E402,F401
from cnn_jax.models import detector  # noqa: E402,F401
from cnn_jax.models import fcn, unet  # noqa: E402,F401
from cnn_jax.models import airbench  # noqa: E402,F401


def create(name: str, **options) -> nn.Module:
  """Builds the registered model ``name`` with constructor ``options``.

  Args:
    name: a registered model name (see :func:`list_models`).
    **options: module fields such as ``num_classes``, ``dtype``, ``dropout_rate``.

  Raises:
    CnnJaxError: for an unknown model name or an option the model does not have.
  """
  constructor = MODELS.get(name)
  valid = model_options(name)
  unknown = [k for k in options if k not in valid]
  if unknown:
    hints = []
    for k in unknown:
      close = difflib.get_close_matches(k, valid, n=3, cutoff=0.5)
      hints.append(repr(k) + (f" (did you mean {', '.join(map(repr, close))}?)" if close else ""))
    raise ConfigError(f"Model {name!r} has no option {', '.join(hints)}. "
                      f"Its options are: {', '.join(valid)}.")
  return constructor(**options)


def model_options(name: str) -> list[str]:
  """The constructor options (module fields) that model ``name`` accepts."""
  module = MODELS.get(name)()  # every variant has defaults for all its fields
  return sorted(f.name for f in dataclasses.fields(module)
                if f.init and f.name not in ("parent", "name"))


def list_models(pattern: str = "*") -> list[str]:
  """Registered model names matching a shell-style ``pattern`` such as ``"resnet*"``."""
  return MODELS.names(pattern)
