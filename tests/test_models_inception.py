"""GoogLeNet, Inception v3 (torchvision and Keras layouts) and Xception.

Parameter counts and shapes are checked abstractly (``jax.eval_shape``: nothing large
is allocated); each model also runs one real training step (forward + gradients) at
its smallest input with batch 2.
"""

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import cnn_jax.models.inception_v3 as inception_v3
from cnn_jax.errors import ShapeError
from cnn_jax.models import MODELS

MIN_SIZE = {"googlenet": 15, "inception_v3": 75, "keras_inception_v3": 75, "xception": 71}
# XLA without its expensive LLVM passes: these graphs compile about 40% faster on CPU.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


@functools.lru_cache(maxsize=None)
def init_shapes(name: str, size: int, **options):
  """``(output, variables)`` shapes of ``init_with_output`` on ``[1, size, size, 3]`` images."""
  model = MODELS.get(name)(**options)
  return jax.eval_shape(model.init_with_output, jax.random.key(0), jnp.zeros((1, size, size, 3)))


def count(tree) -> int:
  return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(tree))


def torch_keys(variables, module_key) -> set[str]:
  """State-dict keys by the documented rule: ``module_key(flax module path)`` + leaf name."""
  leaf_names = {"kernel": "weight", "scale": "weight", "bias": "bias",
                "mean": "running_mean", "var": "running_var"}
  keys = set()
  for path, _ in jax.tree_util.tree_flatten_with_path(variables)[0]:
    names = [p.key for p in path]
    keys.add(f"{module_key(names[1:-1])}.{leaf_names[names[-1]]}")
  return keys


# Torchvision counts parameters only; Keras counts parameters and batch-norm statistics.
@pytest.mark.parametrize("name, options, size, params, keras_total, stage_sizes, width", [
    ("googlenet", {}, 224, 6_624_904, None, (112, 56, 28, 14, 7), 1024),
    ("googlenet", {"aux_logits": True}, 224, 13_004_888, None, (112, 56, 28, 14, 7), 1024),
    ("inception_v3", {}, 299, 27_161_264, None, (147, 71, 35, 17, 8), 2048),
    ("inception_v3", {"aux_logits": False}, 299, 23_834_568, None, (147, 71, 35, 17, 8), 2048),
    ("keras_inception_v3", {}, 299, 23_817_352, 23_851_784, (147, 71, 35, 17, 8), 2048),
    ("xception", {}, 299, 22_855_952, 22_910_480, (147, 74, 37, 19, 10), 2048),
])
def test_counts_and_features_at_reference_size(name, options, size, params, keras_total,
                                               stage_sizes, width):
  (logits, features), variables = init_shapes(name, size, **options)
  assert count(variables["params"]) == params
  if keras_total is not None:
    assert count(variables) == keras_total
  assert logits.shape == (1, 1000) and logits.dtype == jnp.float32
  assert features["pre_logits"].shape == (1, width)
  assert [features[f"stage{i}"].shape[1] for i in range(1, 6)] == list(stage_sizes)


@pytest.mark.parametrize("name, options", [
    ("googlenet", {"aux_logits": True}), ("inception_v3", {"aux_logits": False}),
    ("keras_inception_v3", {}), ("xception", {})])
def test_grayscale_non_square_bfloat16(name, options):
  """bfloat16 compute on a one-channel, non-square image: params and logits stay float32."""
  model = MODELS.get(name)(num_classes=3, dtype=jnp.bfloat16, **options)
  x = jnp.zeros((2, MIN_SIZE[name], MIN_SIZE[name] + 30, 1))
  (logits, features), variables = jax.eval_shape(model.init_with_output, jax.random.key(0), x)
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(variables))
  assert logits.shape == (2, 3) and logits.dtype == jnp.float32
  assert features["stage5"].dtype == jnp.bfloat16


@pytest.mark.parametrize("name, options, size, train", [
    ("googlenet", {}, 14, False),
    ("inception_v3", {"aux_logits": False}, 74, False),
    ("keras_inception_v3", {}, 74, False),
    ("xception", {}, 70, False),
    ("inception_v3", {}, 298, True),  # the auxiliary classifier needs 299x299
])
def test_too_small_inputs_are_refused(name, options, size, train):
  model = MODELS.get(name)(**options)
  with pytest.raises(ShapeError, match="at least"):
    jax.eval_shape(functools.partial(model.init, train=train), jax.random.key(0),
                   jnp.zeros((1, size, size + 10, 3)))


@pytest.mark.parametrize("name, options, size", [
    ("googlenet", {"aux_logits": True}, 224), ("inception_v3", {}, 299)])
def test_aux_outputs_only_in_training(name, options, size):
  model = MODELS.get(name)(**options)
  _, variables = init_shapes(name, size, **options)

  def features_of(x, train):
    apply = functools.partial(model.apply, train=train, mutable=["batch_stats"],
                              rngs={"dropout": jax.random.key(0)})
    return jax.eval_shape(apply, variables, x)[0][1]

  features = features_of(jnp.zeros((1, size, size, 3)), True)
  assert {k for k in features if k.startswith("aux")} == ({"aux1", "aux2"} if name == "googlenet"
                                                          else {"aux"})
  # Evaluation skips the auxiliary heads, so Inception v3 then takes inputs below 299x299.
  features = features_of(jnp.zeros((1, MIN_SIZE[name], MIN_SIZE[name], 3)), False)
  assert not any(k.startswith("aux") for k in features)


def test_googlenet_torchvision_names():
  keys = torch_keys(init_shapes("googlenet", 224, aux_logits=True)[1],
                    lambda names: ".".join(names).replace("_", "."))
  assert len(keys) == 305  # torchvision's state dict, less the num_batches_tracked counters
  assert {"conv1.conv.weight", "conv3.bn.running_var", "inception3a.branch2.1.conv.weight",
          "inception4e.branch4.1.bn.weight", "inception5b.branch3.0.bn.running_mean",
          "aux1.conv.conv.weight", "aux2.fc1.weight", "aux2.fc2.bias", "fc.weight"} <= keys


def test_inception_v3_torchvision_names():
  keys = torch_keys(init_shapes("inception_v3", 299)[1], ".".join)
  assert len(keys) == 484  # torchvision's state dict, less the num_batches_tracked counters
  assert {"Conv2d_1a_3x3.conv.weight", "Mixed_5b.branch5x5_2.bn.running_mean",
          "Mixed_6e.branch7x7dbl_5.conv.weight", "Mixed_7c.branch3x3dbl_3b.bn.bias",
          "AuxLogits.conv1.conv.weight", "AuxLogits.fc.weight", "fc.bias"} <= keys


def test_keras_inception_v3_layer_order():
  """The N-th BasicConv2d called is Keras's conv2d_N / batch_normalization_N."""
  model = MODELS.get("keras_inception_v3")()
  calls = []

  def record(call, args, kwargs, context):
    if isinstance(context.module, inception_v3.BasicConv2d) and context.method_name == "__call__":
      calls.append(context.module.path)
    return call(*args, **kwargs)

  with nn.intercept_methods(record):
    variables = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 75, 75, 3)))
  kernel = lambda path: functools.reduce(dict.get, path + ("conv", "kernel"), variables["params"])
  shapes = [kernel(path).shape for path in calls]
  assert len(shapes) == 94
  # Keras's conv2d ... conv2d_11 (stem and mixed0), then conv2d_85 ... conv2d_93 (mixed10).
  assert shapes[:12] == [(3, 3, 3, 32), (3, 3, 32, 32), (3, 3, 32, 64), (1, 1, 64, 80),
                         (3, 3, 80, 192), (1, 1, 192, 64), (1, 1, 192, 48), (5, 5, 48, 64),
                         (1, 1, 192, 64), (3, 3, 64, 96), (3, 3, 96, 96), (1, 1, 192, 32)]
  assert shapes[-9:] == [(1, 1, 2048, 320), (1, 1, 2048, 384), (1, 3, 384, 384),
                         (3, 1, 384, 384), (1, 1, 2048, 448), (3, 3, 448, 384),
                         (1, 3, 384, 384), (3, 1, 384, 384), (1, 1, 2048, 192)]
  # The documented static equivalent: sorted paths, with branch5x5 before branch3x3dbl in 5b-5d.
  keras_key = lambda path: (path[0], *(p.replace("branch5x5", "branch2_5x5") for p in path[1:]))
  assert sorted(calls, key=keras_key) == calls
  assert "scale" not in variables["params"]["Mixed_5b"]["branch1x1"]["bn"]


def test_xception_keras_names():
  names = set(init_shapes("xception", 299)[1]["params"])
  expected = {"block1_conv1", "block1_conv2", "block14_sepconv1", "block14_sepconv2"}
  expected |= {f"block{b}_{layer}" for b in (2, 3, 4, 13)
               for layer in ("residual", "sepconv1", "sepconv2")}
  expected |= {f"block{b}_sepconv{i}" for b in range(5, 13) for i in (1, 2, 3)}
  expected |= {f"{name}_bn" for name in expected}
  assert names == expected | {"predictions"}


@pytest.mark.parametrize("name, options, size, aux", [
    ("googlenet", {"aux_logits": True}, 15, ("aux1", "aux2")),
    ("inception_v3", {}, 299, ("aux",)),  # keras_inception_v3: its forward pass is checked
    ("xception", {}, 71, ()),             # against Keras in test_convert.py
])
def test_training_step_at_smallest_input(name, options, size, aux):
  model = MODELS.get(name)(num_classes=5, **options)
  x = np.random.default_rng(1).uniform(size=(2, size, size, 3)).astype(np.float32)
  labels = np.array([0, 3])
  # Cheap stand-in for model.init (compiling the initializers costs more than the step);
  # numpy throughout, as every eager jnp op on a new shape would compile a kernel.
  rng = np.random.default_rng(0)

  def init(path, leaf):
    if path[-1].key == "kernel":  # He-normal
      return rng.normal(0, np.sqrt(2 / np.prod(leaf.shape[:-1])), leaf.shape).astype(np.float32)
    return np.full(leaf.shape, 1.0 if path[-1].key in ("scale", "var") else 0.0, np.float32)

  variables = jax.tree_util.tree_map_with_path(
      init, jax.eval_shape(model.init, jax.random.key(0), x))

  def loss_fn(params):
    (logits, features), updates = model.apply(
        {"params": params, "batch_stats": variables["batch_stats"]}, x, train=True,
        mutable=["batch_stats"], rngs={"dropout": jax.random.key(2)})
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    for key in aux:
      loss += 0.3 * optax.softmax_cross_entropy_with_integer_labels(features[key], labels).mean()
    return loss, (logits, features, updates)

  step = jax.jit(jax.grad(loss_fn, has_aux=True)).lower(variables["params"])
  grads, (logits, features, updates) = jax.device_get(
      step.compile(FAST_COMPILE)(variables["params"]))
  assert logits.shape == (2, 5) and logits.dtype == np.float32
  assert np.isfinite(logits).all()
  for key in aux:
    assert features[key].shape == (2, 5) and np.isfinite(features[key]).all()
  assert features["pre_logits"].shape[0] == 2
  assert all(f"stage{i}" in features for i in range(1, 6))
  dead = [jax.tree_util.keystr(path) for path, g in jax.tree_util.tree_flatten_with_path(grads)[0]
          if not (np.isfinite(g).all() and np.any(g != 0))]
  assert not dead, f"zero or non-finite gradients: {dead[:5]}"
  unchanged = [jax.tree_util.keystr(path) for path, new in
               jax.tree_util.tree_flatten_with_path(updates["batch_stats"])[0]
               if np.array_equal(new, functools.reduce(lambda t, k: t[k.key], path,
                                                       variables["batch_stats"]))]
  assert not unchanged, f"batch statistics not updated: {unchanged[:5]}"
