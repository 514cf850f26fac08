"""Every registered model follows the zoo's convention (checked abstractly, no compute)."""

import math

import jax
import jax.numpy as jnp
import pytest

from cnn_jax import create_model, list_models
from cnn_jax.errors import CnnJaxError
from cnn_jax.models import MODELS, catalog


def _output(name: str) -> str:
  """What a model returns besides its features: "logits" (classifiers), "mask" (per-pixel
  logits), "image" (autoencoders, generators), "logit", "logit_map", "grid" (detectors)."""
  return MODELS.info(name).get("output", "logits")


@pytest.mark.parametrize("name", [n for n in list_models() if _output(n) in ("logits", "mask")])
def test_model_convention(name):
  shape = catalog.input_shape(name)
  model = create_model(name, num_classes=7)
  x = jax.ShapeDtypeStruct((2,) + shape, jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  logits, features = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  if _output(name) == "mask":  # per-pixel logits [B, H', W', K]
    assert logits.ndim == 4 and logits.shape[0] == 2 and logits.shape[-1] == 7
    assert features["pre_logits"].ndim == 4
  else:
    assert logits.shape == (2, 7)
    assert features["pre_logits"].shape[0] == 2 and features["pre_logits"].ndim == 2
  assert logits.dtype == jnp.float32
  assert "stage1" in features
  assert sum(math.prod(p.shape) for p in jax.tree.leaves(variables["params"])) > 0


@pytest.mark.parametrize("name", [n for n in list_models() if _output(n) not in ("logits", "mask")])
def test_other_models_return_outputs_and_features(name):
  shape = catalog.input_shape(name)
  model = create_model(name)
  x = jax.ShapeDtypeStruct((2,) + shape, jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  outputs, features = jax.eval_shape(lambda v, x: model.apply(v, x, train=False), variables, x)
  assert outputs.shape[0] == 2 and outputs.dtype == jnp.float32 and isinstance(features, dict)
  if _output(name) == "image" and len(shape) == 3:  # autoencoders and image-to-image
    assert outputs.shape[1:3] == shape[:2]
  assert sum(math.prod(p.shape) for p in jax.tree.leaves(variables["params"])) > 0


def test_list_models_pattern_and_unknown_name():
  assert "resnet50" in list_models("resnet*") and "vgg16" not in list_models("resnet*")
  families = ("lenet5", "simple_cnn", "alexnet", "vgg16_bn", "nin_cifar", "googlenet",
              "inception_v3", "keras_inception_v3", "resnet152", "keras_resnet50",
              "cifar_resnet110", "xception")
  assert set(families) <= set(list_models())
  with pytest.raises(CnnJaxError, match="Did you mean 'resnet50'"):
    create_model("resnet5O")
