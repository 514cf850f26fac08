"""Model zoo families: AlexNet, VGG, NIN, ResNet (torchvision and Keras), CIFAR ResNet.

Big models are only traced abstractly (``jax.eval_shape``): parameter counts and shapes
cost no memory. Forward and gradient checks run on one small representative per family.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import cnn_jax.models.alexnet
import cnn_jax.models.cifar_resnet
import cnn_jax.models.nin
import cnn_jax.models.resnet
import cnn_jax.models.vgg
from cnn_jax.errors import ConfigError, ShapeError
from cnn_jax.models import MODELS
from cnn_jax.models.layers import adaptive_avg_pool
from cnn_jax.models.summary import format_summary, summarize

INPUT_SIZE = {  # family module -> input size we test its models at
    "cnn_jax.models.alexnet": 64, "cnn_jax.models.vgg": 32, "cnn_jax.models.nin": 32,
    "cnn_jax.models.resnet": 64, "cnn_jax.models.cifar_resnet": 32,
}
ZOO = sorted(n for n in MODELS.names() if MODELS.get(n).__module__ in INPUT_SIZE)

# Trainable parameters for RGB input and the default classes (1000, or 10 for CIFAR): the
# ImageNet counts are torchvision's and Keras'; NIN and the CIFAR ResNets (option A) are
# counted by hand from the papers, which round them (0.27M for ResNet-20, ...).
PARAMS = {
    "alexnet": 61_100_840,
    "vgg11": 132_863_336, "vgg13": 133_047_848, "vgg16": 138_357_544, "vgg19": 143_667_240,
    "vgg11_bn": 132_868_840, "vgg13_bn": 133_053_736, "vgg16_bn": 138_365_992,
    "vgg19_bn": 143_678_248,
    "nin_cifar": 966_986,
    # CIFAR-sized members: bearpaw/pytorch-classification's AlexNet (2.47M) and
    # kuangliu/pytorch-cifar's VGGs
    "alexnet_cifar": 2_472_266, "vgg11_bn_cifar": 9_231_114, "vgg13_bn_cifar": 9_416_010,
    "vgg16_bn_cifar": 14_728_266, "vgg19_bn_cifar": 20_040_522,
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
    "resnet101": 44_549_160, "resnet152": 60_192_808,
    "cifar_resnet20": 269_722, "cifar_resnet32": 464_154, "cifar_resnet44": 658_586,
    "cifar_resnet56": 853_018, "cifar_resnet110": 1_727_962,
}
# Keras counts its batch-norm moving statistics among the weights.
KERAS_WEIGHTS = {"keras_resnet50": 25_636_712, "keras_resnet101": 44_707_176,
                 "keras_resnet152": 60_419_944}
# Option B (projection) shortcuts: the counts most CIFAR reimplementations report.
CIFAR_OPTION_B = {"cifar_resnet20": 272_474, "cifar_resnet56": 855_770,
                  "cifar_resnet110": 1_730_714}


def count(tree) -> int:
  return sum(leaf.size for leaf in jax.tree.leaves(tree))


def abstract_variables(model, shape):
  return jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct(shape, jnp.float32))


def test_every_family_model_is_tested():
  assert set(ZOO) == set(PARAMS) | set(KERAS_WEIGHTS)


@pytest.mark.parametrize("name", ZOO)
def test_parameter_count_and_output_convention(name):
  """Exact counts; with bf16 compute, float32 logits and params, and every feature."""
  model = MODELS.get(name)(dtype=jnp.bfloat16)
  size = INPUT_SIZE[MODELS.get(name).__module__]
  x = jax.ShapeDtypeStruct((2, size, size, 3), jnp.float32)
  variables = abstract_variables(model, x.shape)
  if name in KERAS_WEIGHTS:
    assert count(variables) == KERAS_WEIGHTS[name]
  else:
    assert count(variables["params"]) == PARAMS[name]
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(variables))

  logits, features = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
  assert logits.shape == (2, model.num_classes) and logits.dtype == jnp.float32
  stages = sorted(k for k in features if k.startswith("stage"))
  assert stages == [f"stage{i + 1}" for i in range(len(stages))] and len(stages) >= 3
  assert all(features[k].ndim == 4 and features[k].shape[0] == 2 for k in stages)
  assert features["pre_logits"].ndim == 2 and features["pre_logits"].shape[0] == 2


@pytest.mark.parametrize("name", sorted(CIFAR_OPTION_B))
def test_cifar_resnet_option_b_parameter_count(name):
  variables = abstract_variables(MODELS.get(name)(shortcut="projection"), (1, 32, 32, 3))
  assert count(variables["params"]) == CIFAR_OPTION_B[name]


# The smallest member of each family that still runs every code path: a narrow classifier
# for AlexNet and VGG, one block per stage and fewer stages for the ResNets (compiling is
# what costs time on a CPU). The registered models are checked abstractly above; the
# Keras-layout ResNet's forward pass is checked against Keras in test_convert.py.
REPRESENTATIVES = {
    "alexnet": (lambda: MODELS.get("alexnet")(num_classes=10, dense_units=64), 64),
    "vgg_bn": (lambda: cnn_jax.models.vgg.VGG(convs_per_stage=(1, 1, 1, 1, 1), use_batch_norm=True,
                                              num_classes=10, dense_units=64), 32),
    "nin_cifar": (lambda: MODELS.get("nin_cifar")(), 32),
    "resnet_bottleneck": (lambda: cnn_jax.models.resnet.ResNet(
        stage_sizes=(1, 1), block="bottleneck", num_classes=10), 32),
    "cifar_resnet8": (lambda: cnn_jax.models.cifar_resnet.CifarResNet(depth=8), 32),
}


@pytest.mark.parametrize("name", sorted(REPRESENTATIVES))
def test_forward_and_gradients_reach_every_parameter(name):
  make_model, size = REPRESENTATIVES[name]
  model = make_model()
  x = jax.random.uniform(jax.random.key(1), (2, size, size, 1))  # any channel count works
  labels = jnp.array([3, 7])

  @jax.jit
  def run(x):
    # "rbg" keys compile much faster than threefry on CPU, and the test is compile-bound.
    (logits, features), variables = model.init_with_output(jax.random.key(0, impl="rbg"), x)

    def loss_fn(params):
      (logits, _), _ = model.apply({**variables, "params": params}, x, train=True,
                                   rngs={"dropout": jax.random.key(2, impl="rbg")},
                                   mutable=["batch_stats"])
      return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), labels[:, None], 1))

    loss, grads = jax.value_and_grad(loss_fn)(variables["params"])
    reached = jax.tree.map(lambda g: jnp.any(g != 0) & jnp.all(jnp.isfinite(g)), grads)
    return logits, features["pre_logits"], loss, reached

  logits, pre_logits, loss, reached = run(x)
  assert logits.shape == (2, 10) and bool(jnp.all(jnp.isfinite(logits)))
  assert pre_logits.shape[0] == 2 and bool(jnp.all(jnp.isfinite(pre_logits)))
  assert np.isfinite(float(loss))
  unreached = [jax.tree_util.keystr(path)
               for path, ok in jax.tree_util.tree_leaves_with_path(reached) if not ok]
  assert not unreached


def test_adaptive_avg_pool_matches_pytorch_rule():
  x = jax.random.normal(jax.random.key(0), (2, 7, 5, 3))

  def reference(x, out_h, out_w):  # PyTorch: cell i covers [floor(i*n/o), ceil((i+1)*n/o))
    h, w = x.shape[1:3]
    out = np.zeros((x.shape[0], out_h, out_w, x.shape[3]))
    for i in range(out_h):
      for j in range(out_w):
        rows = slice(i * h // out_h, -(-(i + 1) * h // out_h))
        cols = slice(j * w // out_w, -(-(j + 1) * w // out_w))
        out[:, i, j] = np.asarray(x)[:, rows, cols].mean(axis=(1, 2))
    return out

  for out in [(3, 3), (7, 7), (1, 1), (6, 4)]:
    np.testing.assert_allclose(adaptive_avg_pool(x, out), reference(x, *out), rtol=1e-5,
                               atol=1e-6)
  one = jnp.ones((1, 1, 1, 2)) * jnp.array([1.0, 2.0])
  np.testing.assert_allclose(adaptive_avg_pool(one, (7, 7)), jnp.broadcast_to(one, (1, 7, 7, 2)))


def test_too_small_inputs_raise_shape_errors():
  for model, size in [(MODELS.get("alexnet")(), 62), (MODELS.get("vgg11")(), 31)]:
    with pytest.raises(ShapeError):
      abstract_variables(model, (1, size, size, 3))


def test_bad_options_raise_config_errors():
  for model in [MODELS.get("resnet18")(variant="caffe"),
                cnn_jax.models.resnet.ResNet(block="wide"),
                cnn_jax.models.cifar_resnet.CifarResNet(depth=21),
                MODELS.get("cifar_resnet20")(shortcut="conv")]:
    with pytest.raises(ConfigError):
      abstract_variables(model, (1, 32, 32, 3))


@pytest.mark.parametrize("block", [cnn_jax.models.resnet.BasicBlock(16, zero_init_residual=True),
                                   cnn_jax.models.resnet.Bottleneck(4, zero_init_residual=True)])
def test_zero_init_residual_starts_each_block_as_the_identity(block):
  x = jax.random.normal(jax.random.key(1), (1, 4, 4, 16))
  y, variables = block.init_with_output(jax.random.key(0, impl="rbg"), x)
  last_bn = "bn2" if isinstance(block, cnn_jax.models.resnet.BasicBlock) else "bn3"
  assert not jnp.any(variables["params"][last_bn]["scale"])
  assert bool(jnp.all(variables["params"]["bn1"]["scale"] == 1))
  np.testing.assert_allclose(y, jax.nn.relu(x))


def test_keras_and_torchvision_resnets_differ_where_the_references_do():
  rows = {}
  for name in ["resnet50", "keras_resnet50"]:
    summary = summarize(MODELS.get(name)(), (1, 64, 64, 3), compute_flops=False)
    rows[name] = {r.path: r for r in summary.rows}
  tv, keras = rows["resnet50"], rows["keras_resnet50"]
  # v1.5 strides in the 3x3 convolution, Keras' v1 in the first 1x1.
  assert tv["layer2_0/conv1"].output_shape == (1, 16, 16, 128)
  assert keras["layer2_0/conv1"].output_shape == (1, 8, 8, 128)
  assert tv["layer2_0/conv2"].output_shape == keras["layer2_0/conv2"].output_shape == (1, 8, 8, 128)
  # Keras convolutions have a bias.
  assert keras["layer1_0/conv1"].params == tv["layer1_0/conv1"].params + 64
  assert tv["layer1_0/downsample_0"].module == "Conv"
  assert tv["layer1_0/downsample_1"].module == "BatchNorm"


def test_summary_of_resnet50_at_224():
  summary = summarize(MODELS.get("resnet50")(), (1, 224, 224, 3))
  assert summary.total_params == 25_557_032
  assert summary.other_variables == {"batch_stats": 53_120}
  assert abs(summary.gflops - 8.2) / 8.2 < 0.05
  rows = {r.path: r for r in summary.rows}
  assert rows["conv1"].output_shape == (1, 112, 112, 64) and rows["conv1"].params == 9408
  assert rows["layer4_2"].output_shape == (1, 7, 7, 2048)
  assert rows["fc"].params == 2_049_000
  text = format_summary(summary, max_depth=1)
  assert "layer1_0 " in text and "layer1_0/conv1" not in text
  assert "25,557,032" in text and "GFLOPs per image" in text
