"""On-device augmentation (pure jnp, jittable) and the on-device batch gather."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import stats

from cnn_jax.data import augment as A
from cnn_jax.data import device_data
from cnn_jax.errors import ConfigError

B, H, W, C, K = 16, 8, 10, 3, 4
KEY = jax.random.key(0)
IMAGES = jax.random.uniform(jax.random.key(1), (B, H, W, C), minval=0.05, maxval=1.0)
LABELS = jax.nn.one_hot(jnp.arange(B) % K, K)

FULL = dict(crop_padding=2, crop_mode="reflect", flip=True, rotation_degrees=10.0,
            brightness=0.3, contrast=0.3, saturation=0.3, cutout_size=3, mixup_alpha=0.4,
            cutmix_alpha=1.0)


@functools.lru_cache(maxsize=None)
def jitted(**cfg):
  return jax.jit(A.make_augment(cfg))


def run(**cfg):
  return jitted(**cfg)(KEY, IMAGES, LABELS)


def jit(fn, num_static=1):
  """``fn(key, images, *hyper_parameters)`` jitted with static hyper-parameters."""
  return jax.jit(fn, static_argnums=tuple(range(2, 2 + num_static)))


def test_full_pipeline_under_jit_and_vmap():
  """One compile: every step, vmapped over a leading axis of 2 batches with their own keys."""
  aug = jax.jit(jax.vmap(A.make_augment(FULL)))
  keys = jax.random.split(KEY, 2)
  images, labels = jnp.stack([IMAGES, IMAGES]), jnp.stack([LABELS, LABELS])
  x, y = aug(keys, images, labels)
  assert x.shape == (2, B, H, W, C) and x.dtype == jnp.float32
  assert y.shape == (2, B, K) and y.dtype == jnp.float32
  np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-6)
  x2, y2 = aug(keys, images, labels)  # deterministic given the key
  np.testing.assert_array_equal(x, x2)
  np.testing.assert_array_equal(y, y2)
  assert not np.allclose(x[0], x[1])  # another key, other augmentations


def test_empty_config_is_identity():
  x, y = A.make_augment(None)(KEY, IMAGES, LABELS)
  assert x is IMAGES and y is LABELS


def test_flip_really_flips_some_examples():
  x = np.asarray(jax.jit(A.random_flip)(KEY, IMAGES))
  flipped = [np.array_equal(x[i], IMAGES[i, :, ::-1]) for i in range(B)]
  kept = [np.array_equal(x[i], IMAGES[i]) for i in range(B)]
  assert all(f or k for f, k in zip(flipped, kept))
  assert 0 < sum(flipped) < B  # per-example decisions, not one for the whole batch


def test_crop_padding_zero_is_identity():
  assert A.random_crop(KEY, IMAGES, 0) is IMAGES
  np.testing.assert_array_equal(run(crop_padding=0, flip=False)[0], IMAGES)


@pytest.mark.parametrize("mode", ["zero", "reflect"])
def test_crop_is_a_window_of_the_padded_image(mode):
  p = 2
  x = np.asarray(jit(A.random_crop, 2)(KEY, IMAGES, p, mode))
  padded = np.pad(np.asarray(IMAGES), ((0, 0), (p, p), (p, p), (0, 0)),
                  mode="reflect" if mode == "reflect" else "constant")
  offsets = []
  for i in range(B):
    hits = [(dy, dx) for dy in range(2 * p + 1) for dx in range(2 * p + 1)
            if np.array_equal(x[i], padded[i, dy:dy + H, dx:dx + W])]
    assert hits, f"example {i} is not a crop"
    offsets.append(hits[0])
  assert len(set(offsets)) > 1
  if mode == "reflect":
    assert x.min() > 0  # no zero fill


def test_rotation():
  rotation = jit(A.random_rotation)
  np.testing.assert_allclose(rotation(KEY, IMAGES, 0.0), IMAGES, atol=1e-5)
  square = jnp.zeros((2, 9, 9, 1)).at[:, 4, :, :].set(1.0)  # a horizontal bar
  rotated = rotation(KEY, square, 90.0)
  assert rotated.shape == square.shape
  np.testing.assert_allclose(rotated[:, 4, 4], 1.0, atol=1e-5)  # the centre stays put
  assert not np.allclose(rotated[0], rotated[1])


def test_colour_jitter_ranges():
  for fn in map(jit, (A.random_brightness, A.random_contrast, A.random_saturation)):
    np.testing.assert_allclose(fn(KEY, IMAGES, 0.0), IMAGES, atol=1e-6)
    x = fn(KEY, IMAGES, 0.8)
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert not np.allclose(x, IMAGES)
  gray = IMAGES[..., :1]
  np.testing.assert_allclose(jit(A.random_saturation)(KEY, gray, 0.8), gray)


def test_cutout_zeroes_one_square_per_example():
  x = np.asarray(jit(A.cutout)(KEY, IMAGES, 3))
  zeros = (x == 0).all(-1).sum((1, 2))
  assert (zeros >= 1).all() and (zeros <= 9).all()
  keep = x != 0
  np.testing.assert_array_equal(x[keep], np.asarray(IMAGES)[keep])
  positions = [tuple(np.argwhere((x[i] == 0).all(-1))[0]) for i in range(B)]
  assert len(set(positions)) > 1


def test_mixup_and_cutmix_labels_match_the_mixed_pixels():
  """Image i is filled with the value i, so a mixed image's mean must be labels @ ids."""
  ids = jnp.arange(B, dtype=jnp.float32)
  images = ids[:, None, None, None] * jnp.ones((B, H, W, 1))
  onehot = jax.nn.one_hot(jnp.arange(B), B)
  either = A.make_augment(dict(mixup_alpha=0.4, cutmix_alpha=1.0))  # lax.cond picks one
  mixes = jax.jit(lambda k: (A.mixup(k, images, onehot, 0.4), A.cutmix(k, images, onehot, 1.0),
                             either(k, images, onehot)))
  for x, y in mixes(KEY):
    assert x.shape == images.shape and y.shape == (B, B)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(x.mean((1, 2, 3)), y @ ids, rtol=1e-5, atol=1e-4)
    assert ((y > 0) & (y < 1)).any()  # some examples really are mixed


def test_toggling_one_step_keeps_the_others_randomness():
  only_flip = run(flip=True)[0]
  flip_then_cutout = run(flip=True, cutout_size=3)[0]
  keep = flip_then_cutout != 0
  np.testing.assert_array_equal(np.asarray(flip_then_cutout)[keep], np.asarray(only_flip)[keep])


@pytest.mark.parametrize("cfg,match", [
    ({"flipp": True}, "augment.flip"), ({"crop_mode": "wrap"}, "crop_mode"),
    ({"crop_padding": -1}, "crop_padding"), ({"cutout_size": 2.5}, "cutout_size"),
    ({"mixup_alpha": -0.1}, "mixup_alpha"), ({"flip": 1}, "flip"),
])
def test_config_errors(cfg, match):
  with pytest.raises(ConfigError, match=match):
    A.make_augment(ml_collections.ConfigDict(cfg))


def test_normalize():
  x = jnp.full((1, 2, 2, 3), 0.5)
  mean, std = A.NORMALIZATION["cifar10"]
  np.testing.assert_allclose(A.normalize(x, "cifar10")[0, 0, 0],
                             (0.5 - np.array(mean)) / np.array(std), rtol=1e-6)
  np.testing.assert_allclose(A.normalize(x, ((0.5,), (2.0,))), 0.0)
  with pytest.raises(ConfigError, match="known"):
    A.normalize(x, "svhn")


def test_gather_batch_covers_each_example_once_per_epoch():
  n, bs = 10, 4
  images = np.arange(n, dtype=np.uint8)[:, None, None, None] * np.ones((n, 2, 2, 1), np.uint8)
  x_dev, y_dev = device_data.put_on_device(images, np.arange(n, dtype=np.int32))
  perm = device_data.epoch_permutation(KEY, 3, n)
  gather = jax.jit(device_data.gather_batch, static_argnums=4)
  seen = []
  for step in range(2):
    x, y = gather(x_dev, y_dev, perm, step, bs)
    assert x.dtype == jnp.float32 and x.shape == (bs, 2, 2, 1)
    np.testing.assert_allclose(x[:, 0, 0, 0], np.asarray(y) / 255.0)
    seen += list(np.asarray(y))
  assert len(set(seen)) == 2 * bs
  np.testing.assert_array_equal(gather(x_dev, y_dev, perm, 2, bs)[1], gather(
      x_dev, y_dev, perm, 0, bs)[1])  # 2 steps per epoch: step 2 is batch 0 again
  assert not np.array_equal(perm, device_data.epoch_permutation(KEY, 4, n))


@pytest.mark.parametrize("alpha", [0.4, 1.0, 3.0])  # smaller alphas put atoms at 1.0 (float32)
def test_symmetric_beta_matches_scipy(alpha):
  lam = np.asarray(jax.jit(A.symmetric_beta, static_argnums=2)(KEY, alpha, 20_000))
  assert np.isfinite(lam).all() and lam.min() >= 0 and lam.max() <= 1
  assert stats.kstest(lam, stats.beta(alpha, alpha).cdf).pvalue > 1e-3
