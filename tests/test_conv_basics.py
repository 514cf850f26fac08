"""Convolution basics: the course notes' worked numbers (output sizes, parameter counts),
padding modes against np.pad, the classic filters, and receptive fields read off jaxprs."""

import math
import os
import warnings

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from cnn_jax import models
from cnn_jax.basics import arithmetic, filters
from cnn_jax.basics.padding import PADDING_MODES, pad_images
from cnn_jax.basics.receptive_field import receptive_fields
from cnn_jax.errors import ConfigError, ShapeError
from cnn_jax.models.layers import ConvBN
from cnn_jax.models.summary import format_summary, summarize
from cnn_jax.models.upsample import nearest_resize


def test_parameter_counts_of_the_notes():
  assert arithmetic.conv_params(7, in_channels=1, filters=64) == (7 * 7 + 1) * 64 == 3_200
  assert arithmetic.dense_params(28 * 28, 64) == 50_240  # the same 64 units on a flat digit
  assert arithmetic.conv_params((3, 3), 32, 32, use_bias=False, groups=32) == 288  # depthwise
  with pytest.raises(ConfigError, match="groups"):
    arithmetic.conv_params(3, 6, 8, groups=4)


def test_lenet5_has_61706_parameters():
  layers = [arithmetic.conv_params(5, 1, 6), arithmetic.conv_params(5, 6, 16),
            arithmetic.conv_params(5, 16, 120), arithmetic.dense_params(120, 84),
            arithmetic.dense_params(84, 10)]
  summary = summarize(models.create("lenet5"), (1, 32, 32, 1), compute_flops=False)
  assert sum(layers) == summary.total_params == 61_706
  assert [r.params for r in summary.rows] == layers


def test_output_sizes_of_the_notes():
  with warnings.catch_warnings():
    warnings.simplefilter("error")  # exact divisions warn about nothing
    assert arithmetic.conv_output_size(5, 3, stride=2, padding=1) == 3
    assert arithmetic.pool_output_size(arithmetic.pool_output_size(28, 2), 2) == 7
    assert arithmetic.pool_output_size(28, 2) == 14
    assert arithmetic.conv_output_size(32, 5) == 28  # LeNet-5's C1
    assert arithmetic.conv_output_size(32, 3, dilation=2) == 28
  with pytest.warns(UserWarning, match=r"last 1 row\(s\) of the padded input \(0 of them"):
    assert arithmetic.conv_output_size(6, 3, stride=2, padding=1) == 3  # the notes' W_I = 6
  with pytest.warns(UserWarning, match=r"\(224 \+ 6 - 7\) / 2 is not an integer"):
    assert arithmetic.conv_output_size(224, 7, 2, 3) == 112  # the ResNet stem skips a pad row
  with pytest.warns(UserWarning, match=r"last 2 row\(s\) .*\(2 of them image pixels"):
    assert arithmetic.conv_output_size(9, 3, stride=4) == 2
  with pytest.raises(ConfigError, match="does not fit"):
    arithmetic.conv_output_size(4, 7)
  with pytest.raises(ConfigError, match="Unknown padding 'full'"):
    arithmetic.conv_output_size(4, 3, padding="full")


@pytest.mark.parametrize("size", [7, 8, 9, 10])
def test_same_and_valid_at_stride_2_match_keras_and_xla(size):
  os.environ.setdefault("KERAS_BACKEND", "jax")
  keras = pytest.importorskip("keras")
  for padding in ("same", "valid"):
    layer = keras.layers.Conv2D(1, 3, strides=2, padding=padding)
    expected = layer.compute_output_shape((1, size, size, 1))[1]
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter("always")
      assert arithmetic.conv_output_size(size, 3, 2, padding) == expected
    # As the notes say: "valid" drops the last pixel of an even input, "same" pads instead.
    assert len(caught) == (padding == "valid" and size % 2 == 0)
  assert arithmetic.conv_output_size(size, 3, 2, "same") == math.ceil(size / 2)
  # The asymmetric split: the odd pixel goes after, as XLA (and flax's "SAME") pads.
  assert [arithmetic.padding_amounts(size, 3, 2, "same")] == jax.lax.padtype_to_pads(
      (size,), (3,), (2,), "SAME")


@pytest.mark.parametrize("padding,stride", [("SAME", 2), ("VALID", 2), ("VALID", 3),
                                            (((1, 1),), 2)])
def test_transposed_output_size_matches_flax(padding, stride):
  x = jax.ShapeDtypeStruct((1, 7, 1), jnp.float32)
  layer = nn.ConvTranspose(1, (3,), (stride,), padding=padding)
  shape = jax.eval_shape(layer.init_with_output, jax.random.PRNGKey(0), x)[0].shape
  ours = padding.lower() if isinstance(padding, str) else padding[0]
  assert arithmetic.transposed_conv_output_size(7, 3, stride, ours) == shape[1]


def test_transposed_conv_inverts_the_notes_example():
  assert arithmetic.transposed_conv_output_size(3, 3, stride=2, padding=1) == 5
  assert arithmetic.transposed_conv_output_size(3, 3, 2, 1, output_padding=1) == 6
  with pytest.raises(ConfigError, match="output_padding"):
    arithmetic.transposed_conv_output_size(3, 3, 2, 1, output_padding=2)


@pytest.mark.parametrize("mode,numpy_mode", [("zeros", "constant"), ("replicate", "edge"),
                                             ("reflect", "reflect")])
def test_padding_modes_match_numpy(mode, numpy_mode):
  x = np.random.default_rng(0).normal(size=(2, 5, 6, 3)).astype(np.float32)
  pads = ((2, 1), (0, 3))
  expected = np.pad(x, ((0, 0), *pads, (0, 0)), mode=numpy_mode)
  np.testing.assert_array_equal(pad_images(jnp.asarray(x), pads, mode), expected)
  # apply_filter = numpy correlation of the padded image, channel by channel.
  kernel = filters.SOBEL_X
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode=numpy_mode)
  reference = sum(kernel[i, j] * padded[:, i:i + 5, j:j + 6] for i in range(3) for j in range(3))
  np.testing.assert_allclose(filters.apply_filter(x, kernel, mode), reference, atol=1e-5)


def test_bad_padding_input_is_explained():
  with pytest.raises(ConfigError, match="Unknown padding mode 'mirror'"):
    pad_images(jnp.ones((1, 4, 4, 1)), ((1, 1), (1, 1)), "mirror")
  with pytest.raises(ConfigError, match="Reflect padding of 4"):
    pad_images(jnp.ones((1, 4, 4, 1)), ((4, 4), (1, 1)), "reflect")
  with pytest.raises(ShapeError, match=r"\[B, H, W, C\]"):
    filters.apply_filter(jnp.ones((4, 4, 1)), filters.LAPLACIAN)
  assert set(PADDING_MODES) == {"zeros", "replicate", "reflect"}


@pytest.mark.parametrize("mode", ["reflect", "replicate"])
@pytest.mark.parametrize("stride", [1, 2])
def test_convbn_padding_modes(mode, stride):
  x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 7, 6, 3)), jnp.float32)
  zeros = ConvBN(4, strides=(stride, stride))
  padded = ConvBN(4, strides=(stride, stride), padding_mode=mode)
  variables = zeros.init(jax.random.PRNGKey(0), x)
  # Same parameter names and shapes as the default, so checkpoints stay interchangeable.
  assert (jax.tree.structure(padded.init(jax.random.PRNGKey(0), x))
          == jax.tree.structure(variables))
  pads = [arithmetic.padding_amounts(n, 3, stride, "same") for n in x.shape[1:3]]
  manual = np.pad(np.asarray(x), ((0, 0), *pads, (0, 0)), mode=PADDING_MODES[mode])
  valid = ConvBN(4, strides=(stride, stride), padding="VALID")
  out = padded.apply(variables, x)
  np.testing.assert_allclose(out, valid.apply(variables, manual), atol=1e-5)
  assert out.shape == zeros.apply(variables, x).shape
  assert not np.allclose(out, zeros.apply(variables, x))  # the border differs


def test_laplacian_of_a_constant_image_is_zero_away_from_the_border():
  images = jnp.full((1, 8, 9, 3), 0.7)
  out = np.asarray(filters.apply_filter(images, filters.LAPLACIAN))
  np.testing.assert_allclose(out[:, 1:-1, 1:-1], 0, atol=1e-6)
  np.testing.assert_allclose(out[0, 0, 4], -0.7, atol=1e-6)  # one zero neighbour at the top
  np.testing.assert_allclose(filters.apply_filter(images, filters.LAPLACIAN, "replicate"), 0,
                             atol=1e-6)


def test_classic_filters():
  assert filters.PREWITT_X is filters.VERTICAL_EDGE
  np.testing.assert_array_equal(filters.HORIZONTAL_EDGE, filters.VERTICAL_EDGE.T)
  np.testing.assert_array_equal(filters.SOBEL_Y, filters.SOBEL_X.T)
  for kernel in (filters.IDENTITY, filters.SHARPEN, filters.BOX_BLUR, filters.GAUSSIAN_BLUR):
    assert kernel.sum() == pytest.approx(1.0)  # they keep a flat image's brightness
  for kernel in (filters.EDGE_DIAGONAL, filters.LAPLACIAN, filters.EDGE_ALL_DIRECTIONS,
                 filters.SOBEL_X, filters.PREWITT_Y):
    assert kernel.sum() == 0
  with pytest.raises(ValueError):
    filters.LAPLACIAN[1, 1] = 0  # the constants are read-only
  assert filters.format_kernel(filters.GAUSSIAN_BLUR).splitlines() == [
      "1/16 ×", "1 2 1", "2 4 2", "1 2 1"]
  ramp = jnp.tile(jnp.arange(6.0), (1, 5, 1))[..., None]  # brighter to the right
  np.testing.assert_allclose(filters.apply_filter(ramp, filters.SOBEL_X)[0, 1:-1, 1:-1], 8)


def test_filters_command_draws_a_grid(tmp_path):
  from cnn_jax.main import run
  out = tmp_path / "grid.png"
  assert run(["filters", "--padding", "reflect", "--max-size", "48", "--out", str(out)]) == 0
  with Image.open(out) as image:
    assert image.width > 800 and image.height > 300


def _fields(fun, shape):
  return receptive_fields(fun, jax.ShapeDtypeStruct(shape, jnp.float32))


def test_receptive_field_arithmetic_through_conv_pool_dilation_and_upsampling():
  w3 = jnp.ones((3, 3, 1, 1))

  def conv(x, stride=1, padding=((1, 1), (1, 1)), dilation=1):
    return jax.lax.conv_general_dilated(x, w3, (stride, stride), padding,
                                        rhs_dilation=(dilation, dilation),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  def net(x):
    a = conv(x)                       # RF 3, jump 1, start 0
    b = conv(a, stride=2)             # RF 5, jump 2, start 0
    c = conv(b, padding="VALID", dilation=2)  # RF 5 + 2*2*2 = 13, start 0 + 2*2 = 4
    d = nn.max_pool(c, (2, 2), (2, 2))        # RF 15, jump 4, start 5
    up = nearest_resize(d, 2)         # jump 2, each pair of pixels shares d's field
    e = up + conv(up)                 # taps -1..1 of up are d's pixels -1..0: RF 15 + 4
    return a, b, c, d, e, d.reshape(d.shape[0], -1)

  a, b, c, d, e, flat = _fields(net, (1, 32, 32, 1))
  assert (a.size, a.jump, a.start) == ((3, 3), (1, 1), (0, 0))
  assert (b.size, b.jump, b.start) == ((5, 5), (2, 2), (0, 0))
  assert (c.size, c.jump, c.start) == ((13, 13), (2, 2), (4, 4))
  assert (d.size, d.jump, d.start) == ((15, 15), (4, 4), (5, 5))
  assert (e.size, e.jump, e.start) == ((19, 19), (2, 2), (3, 3))
  # A flatten sees all 6 positions of d along each axis.
  assert flat.jump == (None, None) and flat.size == (15 + 5 * 4,) * 2


def test_receptive_fields_in_the_summary():
  lenet = summarize(models.create("lenet5"), (1, 32, 32, 1))
  c5 = {r.path: r for r in lenet.rows}["c5"].receptive_field
  assert c5.size == (32, 32) and c5.start == (15.5, 15.5) and c5.jump == (4, 4)
  assert c5.covers((32, 32))  # C5 sees the whole 32x32 input
  c1 = lenet.rows[0].receptive_field
  assert (c1.size, c1.jump, c1.start) == ((5, 5), (1, 1), (2, 2)) and not c1.covers((32, 32))
  # C1 28*28*6*25 + C3 10*10*16*150 + C5 120*400 + F6 120*84 + output 84*10 multiply-adds.
  assert lenet.gmacs * 1e9 == pytest.approx(416_520)
  assert lenet.gflops == pytest.approx(2 * lenet.gmacs, rel=0.1)
  text = format_summary(lenet)
  assert "GFLOPs per image (2 × multiply-adds" in text and "0.0004165 GMACs per image" in text
  assert text.splitlines()[1].split() == ["module", "type", "output", "shape", "params", "RF",
                                          "jump", "start"]
  resnet = summarize(models.create("cifar_resnet20"), (1, 32, 32, 3), compute_flops=False)
  stages = {r.path: r.receptive_field for r in resnet.rows}
  assert [stages[f"layer{i}_2"].size[0] for i in (1, 2, 3)] == [15, 37, 81]
  assert [stages[f"layer{i}_2"].jump[0] for i in (1, 2, 3)] == [1, 2, 4]
  assert "37*" in format_summary(resnet, max_depth=1)  # larger than the 32x32 image


class _VectorModel(nn.Module):
  """A model on vectors ``[B, D]``: no image, so no receptive fields."""

  @nn.compact
  def __call__(self, x, train=False):
    return nn.Dense(3, name="dense")(x), {}


def test_summary_of_a_model_without_image_input_leaves_out_the_field_columns():
  summary = summarize(_VectorModel(), (2, 5), compute_flops=False)
  assert summary.rows[0].receptive_field is None and summary.gmacs * 1e9 == pytest.approx(5 * 3)
  assert "RF" not in format_summary(summary).splitlines()[1]
