"""Data augmentation as pure ``jnp`` functions, for use inside ``jax.jit``.

Every function takes a PRNG key and float32 images ``[B, H, W, C]`` with values in
[0, 1] (before normalization: the colour ops clip to that range). Each example draws
its own random parameters from the one key, so a result depends only on the key and the
input. ``make_augment`` builds the pipeline that a config's ``augment`` section names;
``normalize`` comes after it.
"""

import difflib
from typing import Callable

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

from cnn_jax.errors import ConfigError

# Per-channel (mean, std) on the [0, 1] scale, over each dataset's training images.
NORMALIZATION = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}

# ITU-R 601 luma weights, as Pillow's and torchvision's grayscale conversions use.
_LUMA = (0.299, 0.587, 0.114)


def normalize(images: jax.Array, stats: str | tuple) -> jax.Array:
  """``(images - mean) / std`` per channel; ``stats`` is a key of NORMALIZATION or (mean, std)."""
  if isinstance(stats, str):
    if stats not in NORMALIZATION:
      raise ConfigError(f"No normalization constants for {stats!r}; known: "
                        f"{', '.join(NORMALIZATION)}. Pass (mean, std) instead.")
    stats = NORMALIZATION[stats]
  mean, std = (jnp.asarray(s, jnp.float32) for s in stats)
  return (images - mean) / std


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
  """Mirrors each image left-right with probability 1/2. ``[B, H, W, C]`` -> same."""
  flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
  return jnp.where(flip, images[:, :, ::-1], images)


def random_crop(key: jax.Array, images: jax.Array, padding: int,
                mode: str = "zero") -> jax.Array:
  """Pads by ``padding`` pixels on every side and cuts a random window of the original size.

  ``mode``: ``"zero"`` (a random translation by up to ``padding`` pixels, filled with 0)
  or ``"reflect"`` (mirrored borders; needs ``padding < H, W``). ``[B, H, W, C]`` -> same.
  """
  if padding == 0:
    return images
  b, h, w, c = images.shape
  pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
  padded = jnp.pad(images, pad, mode="reflect" if mode == "reflect" else "constant")
  corners = jax.random.randint(key, (b, 2), 0, 2 * padding + 1)
  crop = lambda image, yx: jax.lax.dynamic_slice(image, (yx[0], yx[1], 0), (h, w, c))
  return jax.vmap(crop)(padded, corners)


def random_rotation(key: jax.Array, images: jax.Array, max_degrees: float,
                    fill: float = 0.0) -> jax.Array:
  """Rotates each image about its centre by an angle uniform in ``±max_degrees``.

  Bilinear interpolation; pixels from outside the image are ``fill``. ``[B, H, W, C]``.
  """
  b, h, w, _ = images.shape
  angles = jnp.deg2rad(jax.random.uniform(key, (b,), minval=-max_degrees, maxval=max_degrees))
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) - (h - 1) / 2,
                        jnp.arange(w, dtype=jnp.float32) - (w - 1) / 2, indexing="ij")

  def rotate(image, angle):  # [H, W, C]: sample each output pixel at its rotated source
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    coords = [cos * ys - sin * xs + (h - 1) / 2, sin * ys + cos * xs + (w - 1) / 2]
    sample = lambda channel: map_coordinates(channel, coords, order=1, mode="constant", cval=fill)
    return jax.vmap(sample, in_axes=-1, out_axes=-1)(image)

  return jax.vmap(rotate)(images, angles)


def _factors(key: jax.Array, batch: int, strength: float) -> jax.Array:
  """Per-example factors uniform in ``[max(0, 1 - strength), 1 + strength]``, ``[B, 1, 1, 1]``."""
  return jax.random.uniform(key, (batch, 1, 1, 1), minval=max(0.0, 1.0 - strength),
                            maxval=1.0 + strength)


def _grayscale(images: jax.Array) -> jax.Array:
  """``[B, H, W, C]`` -> luma ``[B, H, W, 1]`` (C = 1 is returned as is)."""
  if images.shape[-1] == 1:
    return images
  return images @ jnp.asarray(_LUMA, images.dtype)[:, None]


def random_brightness(key: jax.Array, images: jax.Array, strength: float) -> jax.Array:
  """Scales each image by a factor in ``1 ± strength``. ``[B, H, W, C]`` -> same."""
  return jnp.clip(images * _factors(key, images.shape[0], strength), 0.0, 1.0)


def random_contrast(key: jax.Array, images: jax.Array, strength: float) -> jax.Array:
  """Moves each image towards / away from its mean gray level by a factor in ``1 ± strength``."""
  mean = _grayscale(images).mean(axis=(1, 2, 3), keepdims=True)
  return jnp.clip(mean + _factors(key, images.shape[0], strength) * (images - mean), 0.0, 1.0)


def random_saturation(key: jax.Array, images: jax.Array, strength: float) -> jax.Array:
  """Blends each pixel with its gray value by a factor in ``1 ± strength`` (no-op for C = 1)."""
  gray = _grayscale(images)
  return jnp.clip(gray + _factors(key, images.shape[0], strength) * (images - gray), 0.0, 1.0)


def _box_mask(shape: tuple, top, left, bottom, right) -> jax.Array:
  """``[B, H, W, 1]`` bool, True inside rows ``[top, bottom)`` and columns ``[left, right)``.

  The corners are ``[B]`` integer arrays and may lie outside the image.
  """
  b, h, w = shape[:3]
  rows = jnp.arange(h)[None, :, None, None]
  cols = jnp.arange(w)[None, None, :, None]
  corner = lambda v: v.reshape(b, 1, 1, 1)
  return ((rows >= corner(top)) & (rows < corner(bottom))
          & (cols >= corner(left)) & (cols < corner(right)))


def cutout(key: jax.Array, images: jax.Array, size: int) -> jax.Array:
  """Zeroes a ``size`` x ``size`` square at a random centre in each image (clipped at the
  borders, as in DeVries & Taylor 2017). ``[B, H, W, C]`` -> same."""
  b, h, w, _ = images.shape
  cy, cx = (jax.random.randint(k, (b,), 0, n) for k, n in zip(jax.random.split(key), (h, w)))
  top, left = cy - size // 2, cx - size // 2
  return jnp.where(_box_mask(images.shape, top, left, top + size, left + size), 0.0, images)


def symmetric_beta(key: jax.Array, alpha: float, n: int) -> jax.Array:
  """``[n]`` samples of Beta(alpha, alpha) from three uniforms, without a rejection loop.

  ``X = (1 + S sqrt(Z)) / 2`` for a random sign ``S`` and ``Z ~ Beta(1/2, alpha)``, which is
  ``W / (1 + W)`` for ``W = G(1/2) / G(alpha)`` (independent gammas). ``U^(-1/alpha) - 1``
  is distributed as ``G(1) / G(alpha)``, and ``G(1) cos²(2 pi V) ~ G(1/2)`` because ``cos²``
  of a uniform angle is Beta(1/2, 1/2). Exact for every alpha > 0 (up to float32 rounding
  next to 1, which holds a visible share of the mass for alpha < 0.3), and unlike
  ``jax.random.beta`` (two gamma rejection loops) it compiles in no time.
  """
  k_u, k_v, k_s = jax.random.split(key, 3)
  u = jax.random.uniform(k_u, (n,), minval=jnp.finfo(jnp.float32).tiny)
  w = jnp.expm1(-jnp.log(u) / alpha) * jnp.cos(2 * jnp.pi * jax.random.uniform(k_v, (n,))) ** 2
  z = 1 / (1 + 1 / w)  # w / (1 + w), also right for w = 0 and w = inf
  tail = 0.5 / ((1 + w) * (1 + jnp.sqrt(z)))  # (1 - sqrt(z)) / 2 without cancellation
  return jnp.where(jax.random.bernoulli(k_s, 0.5, (n,)), 1 - tail, tail)


def mixup(key: jax.Array, images: jax.Array, labels: jax.Array,
          alpha: float) -> tuple[jax.Array, jax.Array]:
  """Mixes each example with a random partner from the batch (Zhang et al. 2018).

  Args:
    images: float32 ``[B, H, W, C]``.
    labels: one-hot or soft labels ``[B, K]``.
    alpha: each example's weight is drawn from Beta(alpha, alpha).

  Returns:
    Mixed images ``[B, H, W, C]`` and labels ``[B, K]`` (rows still sum to 1).
  """
  k_lam, k_perm = jax.random.split(key)
  b = images.shape[0]
  lam = symmetric_beta(k_lam, alpha, b)
  partner = jax.random.permutation(k_perm, b)
  lam_x = lam[:, None, None, None]
  return (lam_x * images + (1 - lam_x) * images[partner],
          lam[:, None] * labels + (1 - lam[:, None]) * labels[partner])


def cutmix(key: jax.Array, images: jax.Array, labels: jax.Array,
           alpha: float) -> tuple[jax.Array, jax.Array]:
  """Pastes a random box from a random partner into each example (Yun et al. 2019).

  The box covers about ``1 - lam`` of the image for ``lam ~ Beta(alpha, alpha)``; the
  labels are mixed by the box's actual area after clipping at the borders.
  Shapes as in :func:`mixup`.
  """
  k_lam, k_perm, k_y, k_x = jax.random.split(key, 4)
  b, h, w, _ = images.shape
  lam = symmetric_beta(k_lam, alpha, b)
  partner = jax.random.permutation(k_perm, b)
  cut_h = (h * jnp.sqrt(1 - lam)).astype(jnp.int32)
  cut_w = (w * jnp.sqrt(1 - lam)).astype(jnp.int32)
  cy, cx = jax.random.randint(k_y, (b,), 0, h), jax.random.randint(k_x, (b,), 0, w)
  top, bottom = jnp.clip(cy - cut_h // 2, 0, h), jnp.clip(cy + cut_h - cut_h // 2, 0, h)
  left, right = jnp.clip(cx - cut_w // 2, 0, w), jnp.clip(cx + cut_w - cut_w // 2, 0, w)
  inside = _box_mask(images.shape, top, left, bottom, right)
  kept = 1 - ((bottom - top) * (right - left) / (h * w))[:, None]
  return (jnp.where(inside, images[partner], images),
          kept * labels + (1 - kept) * labels[partner])


# The augment config keys with their "off" defaults, in the order the pipeline applies them.
AUGMENT_DEFAULTS = {
    "crop_padding": 0,         # random crop after padding by this many pixels
    "crop_mode": "zero",       # "zero" (translation) or "reflect"
    "flip": False,             # random horizontal flip
    "rotation_degrees": 0.0,   # random rotation in ±degrees
    "brightness": 0.0,         # colour jitter strengths (factors in 1 ± strength)
    "contrast": 0.0,
    "saturation": 0.0,
    "cutout_size": 0,          # side of the zeroed square
    "mixup_alpha": 0.0,        # Beta(alpha, alpha) mixing; with cutmix too, each batch
    "cutmix_alpha": 0.0,       # uses one of the two, chosen at random
}

Augment = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


def augment_config(**settings):
  """An ``augment`` config section with every key (so each can be overridden from the
  command line), all off except ``settings``; e.g. ``augment_config(flip=True)``."""
  import ml_collections
  unknown = sorted(set(settings) - set(AUGMENT_DEFAULTS))
  if unknown:
    raise ConfigError(f"Unknown augment option(s) {', '.join(unknown)}; known: "
                      f"{', '.join(AUGMENT_DEFAULTS)}.")
  return ml_collections.ConfigDict({**AUGMENT_DEFAULTS, **settings})


def _options(cfg) -> dict:
  """``cfg`` merged over AUGMENT_DEFAULTS, with every key and value checked."""
  given = dict(cfg or {})
  for key in given:
    if key not in AUGMENT_DEFAULTS:
      close = difflib.get_close_matches(key, AUGMENT_DEFAULTS, n=3, cutoff=0.6)
      hint = f" Did you mean {', '.join('augment.' + c for c in close)}?" if close else ""
      raise ConfigError(f"Unknown config key augment.{key}.{hint} Known: "
                        f"{', '.join(AUGMENT_DEFAULTS)}.")
  opts = {**AUGMENT_DEFAULTS, **given}
  if opts["crop_mode"] not in ("zero", "reflect"):
    raise ConfigError(f"augment.crop_mode must be 'zero' or 'reflect', got {opts['crop_mode']!r}.")
  for key, default in AUGMENT_DEFAULTS.items():
    value = opts[key]
    if isinstance(default, bool) and not isinstance(value, bool):
      raise ConfigError(f"augment.{key} must be True or False, got {value!r}.")
    if isinstance(default, int) and not isinstance(default, bool) and (
        not isinstance(value, int) or isinstance(value, bool) or value < 0):
      raise ConfigError(f"augment.{key} must be an integer >= 0, got {value!r}.")
    if isinstance(default, float) and (not isinstance(value, (int, float)) or value < 0):
      raise ConfigError(f"augment.{key} must be a number >= 0, got {value!r}.")
  return opts


def make_augment(cfg) -> Augment:
  """Builds ``augment(key, images, labels) -> (images, labels)`` from an ``augment`` section.

  Args:
    cfg: a ConfigDict or dict with keys from AUGMENT_DEFAULTS (missing keys are off;
      unknown keys raise ConfigError), or None for no augmentation.

  Returns:
    A pure, jittable function of a PRNG key, float32 images ``[B, H, W, C]`` in [0, 1]
    and float labels ``[B, K]`` (one-hot or soft). Each step uses
    ``fold_in(key, <its position in AUGMENT_DEFAULTS>)``, so switching one step on or off
    leaves the randomness of the others unchanged. The labels change only with mixup or
    cutmix.
  """
  o = _options(cfg)
  image_steps = {  # config key that switches the step on -> the step
      "crop_padding": lambda k, x: random_crop(k, x, o["crop_padding"], o["crop_mode"]),
      "flip": random_flip,
      "rotation_degrees": lambda k, x: random_rotation(k, x, o["rotation_degrees"]),
      "brightness": lambda k, x: random_brightness(k, x, o["brightness"]),
      "contrast": lambda k, x: random_contrast(k, x, o["contrast"]),
      "saturation": lambda k, x: random_saturation(k, x, o["saturation"]),
      "cutout_size": lambda k, x: cutout(k, x, o["cutout_size"]),
  }
  streams = {name: i for i, name in enumerate(AUGMENT_DEFAULTS)}
  active = [(streams[name], fn) for name, fn in image_steps.items() if o[name]]
  mix, cut = o["mixup_alpha"], o["cutmix_alpha"]

  def augment(key: jax.Array, images: jax.Array,
              labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    for stream, fn in active:
      images = fn(jax.random.fold_in(key, stream), images)
    mix_key = jax.random.fold_in(key, streams["mixup_alpha"])
    if mix and cut:
      use_cutmix = jax.random.bernoulli(jax.random.fold_in(mix_key, 1))
      return jax.lax.cond(use_cutmix, lambda: cutmix(mix_key, images, labels, cut),
                          lambda: mixup(mix_key, images, labels, mix))
    if mix:
      return mixup(mix_key, images, labels, mix)
    if cut:
      return cutmix(mix_key, images, labels, cut)
    return images, labels

  return augment
