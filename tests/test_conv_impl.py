"""The shared conv layer's implementations: im2col and space to depth equal lax.conv, "auto"
picks per shape."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from cnn_jax.errors import ConfigError
from cnn_jax.models import create, layers

NHWC = ("NHWC", "HWIO", "NHWC")

# (input [B, H, W, C], kernel [kh, kw, C / G, F], strides, padding, kernel dilation,
#  input dilation, groups): the zoo's kinds of convolution at small sizes.
CASES = {
    "lenet_c1_valid": ((2, 12, 12, 1), (5, 5, 1, 6), (1, 1), "VALID", (1, 1), (1, 1), 1),
    "lenet_c5_spans_input": ((2, 5, 5, 16), (5, 5, 16, 12), (1, 1), "VALID", (1, 1), (1, 1), 1),
    "resnet_3x3_same": ((2, 8, 8, 16), (3, 3, 16, 16), (1, 1), "SAME", (1, 1), (1, 1), 1),
    "resnet_stride2_same_odd": ((2, 9, 9, 8), (3, 3, 8, 16), (2, 2), "SAME", (1, 1), (1, 1), 1),
    "projection_1x1_stride2": ((2, 8, 8, 16), (1, 1, 16, 32), (2, 2), "VALID", (1, 1), (1, 1), 1),
    "explicit_asymmetric": ((2, 7, 6, 3), (3, 2, 3, 4), (1, 2), [(1, 2), (0, 1)], (1, 1), (1, 1),
                            1),
    "kernel_dilation": ((2, 10, 10, 4), (3, 3, 4, 4), (1, 1), "SAME", (2, 2), (1, 1), 1),
    "input_dilation": ((2, 5, 5, 4), (3, 3, 4, 4), (1, 1), [(1, 1), (2, 2)], (1, 1), (2, 2), 1),
    "depthwise": ((2, 8, 8, 8), (3, 3, 1, 8), (1, 1), "SAME", (1, 1), (1, 1), 8),
    "grouped": ((2, 8, 8, 8), (3, 3, 2, 12), (2, 2), "SAME", (1, 1), (1, 1), 4),
    "odd_sizes_same": ((2, 9, 7, 3), (3, 3, 3, 4), (1, 1), "SAME", (1, 1), (1, 1), 1),
    "even_kernel_same": ((2, 7, 7, 4), (4, 4, 4, 3), (1, 1), "SAME", (1, 1), (1, 1), 1),
    "one_row_kernel": ((2, 5, 6, 2), (1, 3, 2, 3), (1, 1), [(0, 0), (2, 1)], (1, 1), (1, 1), 1),
}
# The cases space_to_depth_conv computes: stride 1, no dilation, one group.
SPACE_TO_DEPTH_CASES = [case for case, (_, _, strides, _, rhs_dilation, lhs_dilation, groups)
                        in CASES.items() if strides == rhs_dilation == lhs_dilation == (1, 1)
                        and groups == 1]
IMPLEMENTATIONS = ([("im2col", case) for case in CASES]
                   + [("space_to_depth", case) for case in SPACE_TO_DEPTH_CASES])


def _operands(x_shape, k_shape):
  """Unit-scale input and a fan-in scaled kernel, so outputs are O(1) and 1e-5 is tight."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal(x_shape).astype(np.float32)
  w = rng.standard_normal(k_shape).astype(np.float32) / np.sqrt(np.prod(k_shape[:3]))
  return jnp.asarray(x), jnp.asarray(w)


@pytest.mark.parametrize("impl, case", IMPLEMENTATIONS)
def test_impl_matches_lax_conv_forward_and_backward(impl, case):
  x_shape, k_shape, strides, padding, rhs_dilation, lhs_dilation, groups = CASES[case]
  conv_impl = {"im2col": layers.im2col_conv, "space_to_depth": layers.space_to_depth_conv}[impl]
  x, w = _operands(x_shape, k_shape)

  def outputs_and_grads(conv):
    def loss(x, w):
      y = conv(x, w, strides, padding, lhs_dilation, rhs_dilation, NHWC, groups)
      return jnp.sum(jnp.tanh(y)), y
    (_, y), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(x, w)
    return y, grads

  both = jax.jit(lambda: (outputs_and_grads(lax.conv_general_dilated),
                          outputs_and_grads(conv_impl)))
  (y_xla, (dx_xla, dw_xla)), (y, (dx, dw)) = both()
  assert y.shape == y_xla.shape
  np.testing.assert_allclose(y, y_xla, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dx, dx_xla, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(dw, dw_xla, rtol=1e-5, atol=1e-5)


def _conv_count(model, params, x) -> int:
  """How many lax convolutions ``model``'s forward pass traces to."""
  return str(jax.make_jaxpr(lambda p: model.apply(p, x))(params)).count("conv_general_dilated")


def test_lenet_same_parameters_and_outputs_for_every_impl(monkeypatch):
  x = jax.random.normal(jax.random.key(1), (2, 32, 32, 1))
  models = {impl: create("lenet5", conv_impl=impl) for impl in layers.CONV_IMPLS}
  shapes = {impl: jax.eval_shape(model.init, jax.random.key(0), x)
            for impl, model in models.items()}
  assert all(shape == shapes["xla"] for shape in shapes.values())  # same names and shapes
  rng = np.random.default_rng(0)  # (numpy: XLA compiles flax's initializers slowly)
  params = jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.3, s.shape), s.dtype),
                        shapes["xla"])
  logits = {impl: jax.jit(model.apply)(params, x)[0] for impl, model in models.items()}
  for impl in models:
    np.testing.assert_allclose(logits[impl], logits["xla"], rtol=1e-5, atol=1e-5)
  # On the CPU, "auto" takes im2col for C5 (its 5x5 kernel spans the 5x5 input), space to
  # depth (one convolution each) for C1 and C3.
  counts = [_conv_count(models[impl], params, x) for impl in ("xla", "auto", "im2col")]
  assert counts == [3, 2, 0]
  jaxpr = str(jax.make_jaxpr(lambda p: models["auto"].apply(p, x))(params))
  # C1's blocks: 28x28x6 outputs as 14x14x24, C3's: 10x10x16 as 5x5x64
  assert "f32[2,14,14,24] = conv_general_dilated" in jaxpr
  assert "f32[2,5,5,64] = conv_general_dilated" in jaxpr
  monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
  assert _conv_count(models["auto"], params, x) == 3  # off the CPU: XLA's convolution


def test_auto_rule_on_the_cpu(monkeypatch):
  auto = layers.auto_conv_impl
  assert auto((128, 5, 5, 16), (5, 5, 16, 120)) == "im2col"  # spans the input
  assert auto((128, 32, 32, 16), (1, 1, 16, 32), (2, 2)) == "im2col"  # strided 1x1
  assert auto((128, 32, 32, 16), (1, 1, 16, 32)) == "xla"  # a plain matmul already
  # few channels, stride 1, float32: 2x2 blocks (LeNet-5's C1 and C3)
  assert auto((128, 32, 32, 1), (5, 5, 1, 6)) == "space_to_depth"
  assert auto((128, 14, 14, 6), (5, 5, 6, 16)) == "space_to_depth"
  assert auto((128, 16, 16, 1), (3, 3, 1, 16)) == "space_to_depth"
  assert auto((128, 14, 14, 6), (5, 5, 6, 16), dtype=jnp.bfloat16) == "xla"
  assert auto((128, 14, 14, 6), (5, 5, 6, 16), (2, 2)) == "xla"
  assert auto((128, 14, 14, 6), (3, 3, 6, 16), dilated=True) == "xla"
  assert auto((128, 28, 28, 1), (3, 3, 1, 32)) == "xla"  # 32 outputs: XLA's fast path already
  assert auto((128, 32, 32, 16), (3, 3, 16, 16)) == "xla"
  assert auto((128, 5, 5, 16), (5, 5, 1, 16), feature_group_count=16) == "xla"
  assert auto((128, 16, 5, 5), (16, 16, 5, 5), dimension_numbers=("NCHW", "OIHW", "NCHW")) \
      == "xla"
  for backend in ("gpu", "tpu"):
    monkeypatch.setattr(jax, "default_backend", lambda backend=backend: backend)
    assert auto((128, 5, 5, 16), (5, 5, 16, 120)) == "xla"
    assert auto((128, 32, 32, 16), (1, 1, 16, 32), (2, 2)) == "xla"


def test_bad_conv_impl_is_a_config_error():
  x = jnp.zeros((1, 32, 32, 1))
  with pytest.raises(ConfigError, match="Unknown conv_impl 'fast'.*auto, xla, im2col"):
    jax.eval_shape(create("lenet5", conv_impl="fast").init, jax.random.key(0), x)
  conv1d = layers.conv(4, (3,), conv_impl="im2col")
  with pytest.raises(ConfigError, match="2-D NHWC.*conv_impl='xla'"):
    jax.eval_shape(conv1d.init, jax.random.key(0), jnp.zeros((1, 8, 2)))
  strided = layers.conv(4, (3, 3), 2, conv_impl="space_to_depth")
  with pytest.raises(ConfigError, match="stride 1.*strides \\(2, 2\\).*conv_impl='xla'"):
    jax.eval_shape(strided.init, jax.random.key(0), jnp.zeros((1, 8, 8, 2)))
  assert isinstance(layers.conv(4, (3,)), nn.Conv)
