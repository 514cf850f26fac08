"""GAN and CycleGAN networks (shapes for every size, output ranges, parameter counts
against the references) and the MNIST-M-style domain they translate to."""

import io
import math
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from PIL import Image

from cnn_jax.data.domains import load_domains, mnist_m
from cnn_jax.data.local_files import decode_jpeg_split
from cnn_jax.errors import ConfigError, DataError, ShapeError
from cnn_jax.models import create
from cnn_jax.models.cyclegan import patch_map_size
from test_autoencoder_models import numpy_variables

IMAGE_SHAPES = [(28, 28, 1), (32, 32, 3), (64, 64, 3), (64, 64, 1)]


def count(variables) -> int:
  return sum(math.prod(p.shape) for p in jax.tree.leaves(variables["params"]))


def abstract(model, shape, **apply_kw):
  x = jax.ShapeDtypeStruct(shape, jnp.float32)
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
  out = jax.eval_shape(lambda v, x: model.apply(v, x, **apply_kw), variables, x)
  return variables, out


@pytest.mark.parametrize("image_shape", IMAGE_SHAPES)
@pytest.mark.parametrize("family", ["mlp", "dcgan"])
def test_generator_and_discriminator_shapes(family, image_shape):
  gen = create(f"{family}_generator", latent_dim=16, image_shape=image_shape)
  _, (images, _) = abstract(gen, (3, 16))
  assert images.shape == (3,) + image_shape and images.dtype == jnp.float32
  disc = create(f"{family}_discriminator", image_shape=image_shape)
  _, (logits, features) = abstract(disc, (3,) + image_shape)
  assert logits.shape == (3,) and logits.dtype == jnp.float32
  assert features["pre_logits"].ndim == 2 and features["pre_logits"].shape[0] == 3


def test_dcgan_default_widths_follow_the_image_size():
  for side, widths, start in [(28, (128, 64), 7), (32, (256, 128, 64), 4),
                              (64, (512, 256, 128, 64), 4)]:
    _, (_, features) = abstract(create("dcgan_generator", image_shape=(side, side, 3)), (2, 100))
    assert [features[f"stage{i + 1}"].shape[-1] for i in range(len(widths))] == list(widths)
    assert features["stage1"].shape[1:3] == (start, start)
    _, (_, features) = abstract(create("dcgan_discriminator", image_shape=(side, side, 3)),
                                (2, side, side, 3))
    assert [features[f"stage{i + 1}"].shape[-1] for i in range(len(widths))] == list(widths[::-1])
  with pytest.raises(ConfigError, match="divisible by 8"):
    abstract(create("dcgan_generator", image_shape=(28, 28, 1), widths=(64, 32, 16)), (1, 100))


def test_output_ranges_and_train_mode():
  z = jnp.asarray(np.random.default_rng(0).normal(size=(4, 8)) * 10, jnp.float32)
  for name, output, low in [("mlp_generator", "sigmoid", 0.0), ("dcgan_generator", "tanh", -1.0)]:
    gen = create(name, latent_dim=8, image_shape=(8, 8, 1), widths=(8, 4), output=output)
    variables = numpy_variables(gen, z)
    images, _ = jax.jit(lambda v, z: gen.apply(v, z))(variables, z)
    assert low <= float(images.min()) < float(images.max()) <= 1.0
  # DCGAN: batch statistics update in train mode, on every layer but the first.
  disc = create("dcgan_discriminator", image_shape=(8, 8, 1), widths=(4, 8))
  x = jnp.asarray(np.random.default_rng(1).uniform(-1, 1, (4, 8, 8, 1)), jnp.float32)
  variables = numpy_variables(disc, x)
  train_apply = jax.jit(lambda v, x: disc.apply(v, x, train=True, mutable=["batch_stats"]))
  (logits, _), updates = train_apply(variables, x)
  assert logits.shape == (4,) and np.all(np.isfinite(logits))
  assert list(updates["batch_stats"]) == ["conv2_bn"]
  assert not np.allclose(updates["batch_stats"]["conv2_bn"]["mean"],
                         variables["batch_stats"]["conv2_bn"]["mean"])
  # Dropout in train mode needs the "dropout" rng stream (checked abstractly: compiling the
  # random bits costs seconds on CPU).
  disc = create("dcgan_discriminator", image_shape=(8, 8, 1), widths=(4, 8), dropout_rate=0.5)
  abstract(disc, (4, 8, 8, 1), train=True, mutable=["batch_stats"],
           rngs={"dropout": jax.random.PRNGKey(0)})
  with pytest.raises(ShapeError, match=r"noise \[B, 8\]"):
    gen.init(jax.random.PRNGKey(0), jnp.zeros((1, 9)))
  with pytest.raises(ConfigError, match="tanh, sigmoid"):
    abstract(create("mlp_generator", output="relu"), (1, 100))


def test_mlp_parameter_counts():
  variables, _ = abstract(create("mlp_generator", latent_dim=100, widths=(128,)), (1, 100))
  assert count(variables) == (100 * 128 + 128) + (128 * 784 + 784)
  variables, _ = abstract(create("mlp_discriminator", widths=(256,)), (1, 28, 28, 1))
  assert count(variables) == (784 * 256 + 256) + (256 + 1)


def test_cyclegan_parameter_counts_match_the_reference():
  """The reference (PyTorch CycleGAN) puts a bias in every convolution and instance norm
  without scale/bias; here convolutions before a norm have no bias and the norm has both:
  one extra parameter per normalized channel. Reference totals: 11,378,179 for
  resnet_9blocks (it prints 11.378 M) and 2,764,737 for the 3-layer PatchGAN (2.765 M)."""
  gen = create("resnet_generator", num_blocks=9, upsample="transpose")
  variables, (out, _) = abstract(gen, (1, 256, 256, 3))
  normalized = 64 + 128 + 256 + 18 * 256 + 128 + 64
  assert out.shape == (1, 256, 256, 3) and count(variables) == 11_378_179 + normalized
  variables, (logits, _) = abstract(create("patch_discriminator"), (1, 256, 256, 3))
  assert logits.shape == (1, 30, 30) and count(variables) == 2_764_737 + (128 + 256 + 512)


@pytest.mark.parametrize("side,num_layers,map_side", [(28, 2, 5), (32, 2, 6), (32, 3, 2)])
def test_cyclegan_small_sizes(side, num_layers, map_side):
  gen = create("resnet_generator", out_channels=3, width=8, num_blocks=2)
  _, (out, features) = abstract(gen, (2, side, side, 1))
  assert out.shape == (2, side, side, 3) and features["bottleneck"].shape[1] == side // 4
  disc = create("patch_discriminator", width=8, num_layers=num_layers)
  _, (logits, _) = abstract(disc, (2, side, side, 3))
  assert logits.shape == (2, map_side, map_side) == (2,) + (patch_map_size(side, num_layers),) * 2
  with pytest.raises(ShapeError, match="divisible by 4"):
    abstract(gen, (1, 30, 30, 1))
  with pytest.raises(ShapeError, match="empty logit map"):
    abstract(create("patch_discriminator", num_layers=4), (1, 28, 28, 3))


def test_cyclegan_output_range_and_reflect_padding():
  gen = create("resnet_generator", out_channels=1, width=4, num_blocks=1)
  x = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (2, 8, 8, 3)), jnp.float32)
  out, _ = jax.jit(lambda v, x: gen.apply(v, x))(numpy_variables(gen, x), x)
  assert out.shape == (2, 8, 8, 1) and -1.0 <= float(out.min()) < float(out.max()) <= 1.0


# ------------------------------------------------------------------ MNIST-M domain


def _boundary_contrast(coloured: np.ndarray, digits: np.ndarray) -> np.ndarray:
  """Per image: mean colour change between horizontal neighbours across the digit's edge
  over the mean change between background neighbours. ``> 1`` means the edge shows."""
  step = np.abs(np.diff(coloured.astype(np.float32), axis=2)).sum(-1)  # [N, H, W - 1]
  ink = digits[..., 0] > 128
  edge = ink[:, :, 1:] != ink[:, :, :-1]
  background = (digits[..., 0] < 10)[:, :, 1:] & (digits[..., 0] < 10)[:, :, :-1]
  return np.array([s[e].mean() / (s[b].mean() + 1e-6) for s, e, b in zip(step, edge, background)])


def test_mnist_m_is_deterministic_and_inverts_the_patch_inside_the_digit():
  rng = np.random.default_rng(0)
  digits = rng.integers(0, 256, (5, 28, 28, 1), dtype=np.uint8)
  photos = rng.integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
  a, b, c = mnist_m(digits, photos, 7), mnist_m(digits, photos, 7), mnist_m(digits, photos, 8)
  assert a.shape == (5, 28, 28, 3) and a.dtype == np.uint8
  np.testing.assert_array_equal(a, b)
  assert np.any(a != c)
  # One photo, fully covered (size 32): the output is exactly |photo - padded digit|.
  full = mnist_m(digits, photos[:1], 0, size=32)
  padded = np.pad(digits, ((0, 0), (2, 2), (2, 2), (0, 0))).astype(int)
  np.testing.assert_array_equal(full, np.abs(photos[:1].astype(int) - padded))
  with pytest.raises(DataError, match="size"):
    mnist_m(digits, photos, 0, size=33)
  with pytest.raises(DataError, match="grayscale"):
    mnist_m(photos, photos, 0)


def test_mnist_m_digits_stay_visible_on_real_data(shared_data):
  with np.load(os.path.join(shared_data, "mnist.npz")) as d:
    digits = d["x_test"][:300]
  with np.load(os.path.join(shared_data, "cifar10_jpeg.npz")) as d:
    offsets = d["test_offsets"][:101]
    photos = decode_jpeg_split(d["test_jpeg"][:offsets[-1]], offsets, "cifar test")
  contrast = _boundary_contrast(mnist_m(digits, photos, 0), digits)
  assert contrast.min() > 1.5 and np.median(contrast) > 4, (contrast.min(), np.median(contrast))


def _jpeg_npz(path: str, images: np.ndarray) -> None:
  blobs = []
  for image in images:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG")
    blobs.append(np.frombuffer(buffer.getvalue(), np.uint8))
  offsets = np.cumsum([0] + [len(b) for b in blobs])
  np.savez(path, train_jpeg=np.concatenate(blobs), train_offsets=offsets,
           y_train=np.zeros(len(images), np.uint8), test_jpeg=np.concatenate(blobs),
           test_offsets=offsets, y_test=np.zeros(len(images), np.uint8))


def test_load_domains_reads_both_files_from_the_data_dir(tmp_path):
  rng = np.random.default_rng(0)
  np.savez(tmp_path / "mnist.npz", x_train=rng.integers(0, 256, (6, 28, 28, 1), dtype=np.uint8),
           y_train=np.arange(6, dtype=np.uint8),
           x_test=rng.integers(0, 256, (4, 28, 28, 1), dtype=np.uint8),
           y_test=np.arange(4, dtype=np.uint8))
  _jpeg_npz(str(tmp_path / "cifar10_jpeg.npz"), rng.integers(0, 256, (3, 32, 32, 3), np.uint8))
  cfg = ml_collections.ConfigDict({"data_dir": str(tmp_path), "cache_dir": str(tmp_path / "c"),
                                   "seed": 3, "image_size": 32})
  mnist, coloured = load_domains(cfg)
  assert mnist.train_images.shape == (6, 32, 32, 1) and coloured.test_images.shape == (4, 32, 32, 3)
  np.testing.assert_array_equal(coloured.train_labels, np.arange(6))
  np.testing.assert_array_equal(mnist.test_labels, coloured.test_labels)
  np.testing.assert_array_equal(load_domains(cfg)[1].train_images, coloured.train_images)
  cfg.data_dir = str(tmp_path / "missing")
  with pytest.raises(DataError, match="not found"):
    load_domains(cfg)
