"""U-Net and FCN: output shapes, parameter counts, bilinear upsampling, gradients, and a
short U-Net training on shapes scenes that must beat the all-background prediction."""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from cnn_jax.data.scenes import shapes_scenes
from cnn_jax.errors import ConfigError, ShapeError
from cnn_jax.metrics import segmentation as seg
from cnn_jax.models import MODELS
from cnn_jax.models.fcn import FCN, BilinearUpsample
from cnn_jax.models.unet import UNet, center_crop, valid_output_size


def count(tree) -> int:
  return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(tree))


def abstract(model, shape):
  """(variables, logits, features) of ``model`` on float inputs of ``shape``, no compute."""
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.key(0), x)
  logits, features = jax.eval_shape(lambda v, x: model.apply(v, x), variables, x)
  return variables, logits, features


def unet_parameters(channels: int, classes: int, depth: int, width: int, batch_norm: bool):
  """Parameters of a U-Net with 2x2 up-convolutions, counted layer by layer."""
  def conv(k, cin, cout):  # with batch norm: no conv bias, a BN scale and bias
    return k * k * cin * cout + (2 * cout if batch_norm else cout)

  widths = [width * 2 ** level for level in range(depth + 1)]
  total, cin = 0, channels
  for w in widths:  # encoder levels and bottleneck
    total += conv(3, cin, w) + conv(3, w, w)
    cin = w
  for level in reversed(range(depth)):
    w = widths[level]
    total += 4 * widths[level + 1] * w + w  # up-convolution (always with bias)
    total += conv(3, 2 * w, w) + conv(3, w, w)
  return total + width * classes + classes


def test_unet_paper_network():
  variables, logits, features = abstract(MODELS.get("unet_paper")(), (1, 572, 572, 1))
  assert logits.shape == (1, 388, 388, 2) and logits.dtype == jnp.float32
  assert count(variables["params"]) == 31_030_658 == unet_parameters(1, 2, 4, 64, False)
  assert "batch_stats" not in variables
  assert features["stage1"].shape == (1, 568, 568, 64)  # the paper's figure 1
  assert features["bottleneck"].shape == (1, 28, 28, 1024)
  assert valid_output_size(572, 4) == 388


@pytest.mark.parametrize("depth,padding,upsample,size", [
    (1, "same", "transpose", 16), (2, "same", "pixel_shuffle", 16), (3, "same", "resize_conv", 32),
    (2, "valid", "transpose", 44), (3, "valid", "pixel_shuffle", 92)])
def test_unet_shapes_and_counts(depth, padding, upsample, size):
  model = UNet(num_classes=5, depth=depth, base_width=8, padding=padding, upsample=upsample)
  variables, logits, features = abstract(model, (2, size, size, 3))
  out = size if padding == "same" else valid_output_size(size, depth)
  assert logits.shape == (2, out, out, 5)
  assert features["pre_logits"].shape == (2, out, out, 8)
  assert [k for k in features if k.startswith("stage")] == [f"stage{i + 1}" for i in range(depth)]
  if upsample == "transpose":
    assert count(variables["params"]) == unet_parameters(3, 5, depth, 8, True)
  assert count(variables["batch_stats"]) == 2 * sum(  # mean and var after every 3x3 conv
      2 * 8 * 2 ** level for level in range(depth + 1)) + 2 * sum(
          2 * 8 * 2 ** level for level in range(depth))


def test_unet_bad_inputs():
  with pytest.raises(ShapeError, match="divisible by 8"):
    abstract(UNet(depth=3), (1, 36, 36, 3))
  assert valid_output_size(64, 2) == 24
  with pytest.raises(ShapeError, match="use e.g. 92.$"):  # the smallest input for depth 3
    valid_output_size(64, 3)
  with pytest.raises(ShapeError, match="cannot take 104-pixel") as error:
    valid_output_size(104, 3)
  smaller, larger = map(int, re.search(r"use e.g. (\d+) or (\d+)", str(error.value)).groups())
  assert valid_output_size(smaller, 3) > 0 and valid_output_size(larger, 3) > 0
  for size in range(smaller + 1, larger):  # and they are the nearest ones
    with pytest.raises(ShapeError):
      valid_output_size(size, 3)
  with pytest.raises(ConfigError, match="upsample"):
    abstract(UNet(upsample="bicubic"), (1, 32, 32, 3))
  with pytest.raises(ConfigError, match="padding"):
    abstract(UNet(padding="reflect"), (1, 32, 32, 3))
  x = jnp.arange(2 * 6 * 7).reshape(2, 6, 7)
  np.testing.assert_array_equal(center_crop(x, 2, 3), x[:, 2:4, 2:5])


@pytest.mark.parametrize("name", [f"fcn{s}s_{b}" for s in (32, 16, 8)
                                  for b in ("vgg16", "resnet18")])
def test_fcn_variants(name):
  model = MODELS.get(name)(num_classes=6)
  variables, logits, features = abstract(model, (2, 64, 64, 3))
  assert logits.shape == (2, 64, 64, 6) and logits.dtype == jnp.float32
  assert features["pre_logits"].shape == (2, 2, 2, model.head_width)
  params = variables["params"]
  skips = {32: set(), 16: {"score16"}, 8: {"score16", "score8"}}[model.output_stride]
  assert {k for k in params if k.startswith("score")} == {"score32"} | skips
  # The backbone is the zoo model itself (same parameter names), with a one-output head.
  head = {"num_classes": 1, **({"dense_units": 1} if "vgg" in name else {})}
  reference, _, _ = abstract(MODELS.get(model.backbone)(**head), (2, 64, 64, 3))
  assert jax.tree.structure(params["backbone"]) == jax.tree.structure(reference["params"])
  widths = {"vgg16": (512, 512, 256), "resnet18": (512, 256, 128)}[model.backbone]
  assert count(params) - count(params["backbone"]) == fcn_head_parameters(
      model.output_stride, widths, 6, model.head_width)


def fcn_head_parameters(stride: int, widths: tuple[int, int, int], classes: int,
                        head_width: int) -> int:
  """FCN layers beyond the backbone, 1x1 fc6; ``widths``: channels at strides 32, 16, 8."""
  total = widths[0] * head_width + head_width  # fc6
  total += head_width * head_width + head_width  # fc7
  total += head_width * classes + classes  # score32
  fusions = {32: 0, 16: 1, 8: 2}[stride]
  for width in widths[1:1 + fusions]:
    total += width * classes + classes  # score16, score8
    total += 4 * 4 * classes * classes  # 2x bilinear transposed convolution, no bias
  return total + (2 * stride) ** 2 * classes * classes  # the final upsampling


def test_fcn_bad_inputs():
  with pytest.raises(ShapeError, match="multiples of 32"):
    abstract(FCN(backbone="resnet18"), (1, 48, 48, 3))
  with pytest.raises(ConfigError, match="output_stride"):
    abstract(FCN(backbone="resnet18", output_stride=4), (1, 64, 64, 3))
  with pytest.raises(ConfigError, match="no feature map at stride 32"):
    abstract(FCN(backbone="cifar_resnet20"), (1, 64, 64, 3))


def test_bilinear_upsampling_matches_resize():
  x = jax.random.normal(jax.random.key(0), (1, 5, 6, 2))
  for factor in (2, 8):
    layer = BilinearUpsample(factor)
    y = jax.jit(layer.init_with_output)(jax.random.key(1), x)[0]
    reference = jax.image.resize(x, (1, 5 * factor, 6 * factor, 2), "linear")
    inner = (slice(None), slice(factor, -factor), slice(factor, -factor))
    assert y.shape == reference.shape
    np.testing.assert_allclose(y[inner], reference[inner], atol=1e-5)


def test_gradients_reach_every_parameter():
  """One small U-Net with the paper's layout (compiling is what costs time on a CPU)."""
  model = UNet(num_classes=3, depth=1, base_width=4, padding="valid", use_batch_norm=False,
               dropout_rate=0.5)
  x = jax.random.uniform(jax.random.key(1), (2, 20, 20, 3))

  @jax.jit
  def run(x):
    (logits, _), variables = model.init_with_output(jax.random.key(0, impl="rbg"), x)
    labels = jnp.zeros(logits.shape[:3], jnp.int32).at[:, :3].set(1).at[:, :, :2].set(2)

    def loss_fn(params):
      (logits, _), _ = model.apply({**variables, "params": params}, x, train=True,
                                   rngs={"dropout": jax.random.key(2, impl="rbg")},
                                   mutable=["batch_stats"])
      return seg.cross_entropy_dice_loss(logits, labels).mean()

    grads = jax.grad(loss_fn)(variables["params"])
    return jax.tree.map(lambda g: jnp.any(g != 0) & jnp.all(jnp.isfinite(g)), grads)

  unreached = [jax.tree_util.keystr(path)
               for path, ok in jax.tree_util.tree_leaves_with_path(run(x)) if not ok]
  assert not unreached


def test_unet_learns_shapes_scenes():
  """60 Adam steps on 200 32x32 scenes, objects vs background: on 100 held-out scenes the
  pixel accuracy must beat the all-background prediction by far."""
  options = {"size": 32, "radius_range": (0.15, 0.3)}
  train, test = shapes_scenes(200, seed=0, **options), shapes_scenes(100, seed=1, **options)
  model = UNet(num_classes=2, depth=2, base_width=16, upsample="pixel_shuffle")
  images = jnp.asarray(train["image"], jnp.float32) / 255.0
  masks = jnp.asarray(train["mask"] > 0, jnp.int32)
  variables = jax.jit(model.init)(jax.random.key(0), images[:1])
  optimizer = optax.adam(1e-2)

  @jax.jit
  def train_step(variables, opt_state, batch_images, batch_masks):
    def loss_fn(params):
      (logits, _), new = model.apply({**variables, "params": params}, batch_images, train=True,
                                     mutable=["batch_stats"])
      return seg.pixel_cross_entropy(logits, batch_masks).mean(), new
    grads, new = jax.grad(loss_fn, has_aux=True)(variables["params"])
    updates, opt_state = optimizer.update(grads, opt_state)
    return {"params": optax.apply_updates(variables["params"], updates), **new}, opt_state

  opt_state = optimizer.init(variables["params"])
  order = np.random.default_rng(0).permutation(np.tile(np.arange(200), 5))
  for step in range(60):
    batch = order[16 * step:16 * (step + 1)]
    variables, opt_state = train_step(variables, opt_state, images[batch], masks[batch])
  logits, _ = jax.jit(model.apply)(variables, jnp.asarray(test["image"], jnp.float32) / 255.0)
  truth = (test["mask"] > 0).astype(np.int32)
  results = seg.compute(seg.update(seg.SegmentationStats.empty(2), logits, truth,
                                   np.ones(100, bool), np.zeros(100)))
  background = float((truth == 0).mean())
  print(f"background share {background:.3f}, pixel accuracy {results['pixel_accuracy']:.3f}, "
        f"object IoU {results['per_class']['iou'][1]:.3f}")
  assert results["pixel_accuracy"] > background + 0.1
  assert results["per_class"]["iou"][1] > 0.5
