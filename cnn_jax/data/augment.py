"""Data augmentation as pure ``jnp`` functions, for use inside ``jax.jit``.

A batch is a dict of arrays sharing their first axis ``B``, and ``kinds`` names what each
key holds (the keys and kinds of :class:`cnn_jax.data.sources.ArrayData`):

* ``"image"``: float32 ``[B, H, W, C]`` in [0, 1] (before normalization: the colour ops
  clip to that range).
* ``"mask"``: int ``[B, H, W]`` per-pixel class ids.
* ``"boxes"``: float32 ``[B, M, 4]`` boxes ``(y_min, x_min, y_max, x_max)`` as fractions of
  the height and width; the key of kind ``"box_valid"``, bool ``[B, M]``, flags the real ones.
* ``"label"``: int ``[B]`` class ids or soft labels ``[B, K]``.
* ``"other"``: left untouched, as are keys that ``kinds`` does not name.

Each op draws its random parameters once per example from its own key and applies them to
every input it concerns: crop, flip and rotation move images, masks (nearest-neighbour,
pixels from outside get ``mask_fill``) and boxes alike (rotation: the box enclosing the
rotated corners; moved boxes are clipped to the image, and one left thinner than
MIN_BOX_SIDE_PIXELS loses its validity flag); the colour ops and cutout touch only images;
mixup and cutmix mix images and labels, and refuse masks and boxes (a ConfigError). So a
result depends only on the key and the input.
``make_augment`` builds the pipeline that a config's ``augment`` section names;
``normalize`` comes after it. The per-op functions on images alone (``random_flip(key,
images)``, ...) draw the same parameters from the same key as the pipeline's steps.
"""

import difflib
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

from cnn_jax.errors import ConfigError, DataError

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

# A box moved or clipped to a side shorter than this many pixels stops being valid.
MIN_BOX_SIDE_PIXELS = 0.1

# The input kinds, and the kind of each key of ArrayData's splits.
KINDS = ("image", "mask", "boxes", "box_valid", "label", "other")
_ARRAY_DATA_KINDS = {"image": "image", "label": "label", "mask": "mask", "boxes": "boxes",
                     "box_valid": "box_valid", "box_classes": "other"}
_SHAPES = {"image": "[B, H, W, C]", "mask": "[B, H, W]", "boxes": "[B, M, 4]",
           "box_valid": "[B, M]", "label": "[B] or [B, K]"}


def normalize(images: jax.Array, stats: str | tuple) -> jax.Array:
  """``(images - mean) / std`` per channel; ``stats`` is a key of NORMALIZATION or (mean, std)."""
  if isinstance(stats, str):
    if stats not in NORMALIZATION:
      raise ConfigError(f"No normalization constants for {stats!r}; known: "
                        f"{', '.join(NORMALIZATION)}. Pass (mean, std) instead.")
    stats = NORMALIZATION[stats]
  mean, std = (jnp.asarray(s, jnp.float32) for s in stats)
  return (images - mean) / std


class _Op(NamedTuple):
  """One augmentation op. ``draw(key, (B, H, W))`` returns its per-example parameters; the
  others apply them: ``image(params, x)`` and ``mask(params, m)`` to pixel arrays,
  ``boxes(params, boxes, (H, W))`` to boxes (clipped and re-flagged afterwards) and
  ``label(params, y)`` to soft labels. None leaves that kind unchanged; the kinds in
  ``refuses`` cannot go with the op (a ConfigError)."""
  draw: Callable
  image: Callable
  mask: Callable | None = None
  boxes: Callable | None = None
  label: Callable | None = None
  refuses: tuple[str, ...] = ()


def _per_example(condition: jax.Array, if_true: jax.Array, if_false: jax.Array) -> jax.Array:
  """``where`` with a ``[B]`` condition broadcast over the other axes."""
  shape = (-1,) + (1,) * (if_true.ndim - 1)
  return jnp.where(condition.reshape(shape), if_true, if_false)


def _blend(weight: jax.Array, x: jax.Array, partner: jax.Array) -> jax.Array:
  """``weight * x + (1 - weight) * x[partner]`` per example, for a ``[B]`` weight."""
  weight = weight.reshape((-1,) + (1,) * (x.ndim - 1))
  return weight * x + (1 - weight) * x[partner]


def _on_images(op: _Op, key: jax.Array, images: jax.Array) -> jax.Array:
  """Applies ``op`` to images ``[B, H, W, C]`` alone."""
  return op.image(op.draw(key, images.shape[:3]), images)


def _flip_op() -> _Op:
  """Left-right mirror with probability 1/2; boxes ``x -> 1 - x``."""
  def pixels(flip, x):  # [B, H, W, ...]
    return _per_example(flip, x[:, :, ::-1], x)

  def boxes(flip, b, hw):
    y0, x0, y1, x1 = (b[..., i] for i in range(4))
    return _per_example(flip, jnp.stack([y0, 1 - x1, y1, 1 - x0], -1), b)

  return _Op(draw=lambda key, shape: jax.random.bernoulli(key, 0.5, shape[:1]),
             image=pixels, mask=pixels, boxes=boxes)


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
  """Mirrors each image left-right with probability 1/2. ``[B, H, W, C]`` -> same."""
  return _on_images(_flip_op(), key, images)


def _crop_op(padding: int, mode: str, mask_fill: int = 0) -> _Op:
  """A window of the original size cut from the input padded by ``padding`` on every side;
  the parameters are the windows' top-left corners ``[B, 2]`` in the padded input."""
  def window(fill):
    def cut(corners, x):  # [B, H, W, ...]
      pad = ((0, 0), (padding, padding), (padding, padding)) + ((0, 0),) * (x.ndim - 3)
      padded = (jnp.pad(x, pad, mode="reflect") if mode == "reflect"
                else jnp.pad(x, pad, constant_values=fill))
      crop = lambda one, yx: jax.lax.dynamic_slice(
          one, (yx[0], yx[1]) + (0,) * (x.ndim - 3), x.shape[1:])
      return jax.vmap(crop)(padded, corners)
    return cut

  def boxes(corners, b, hw):  # the content moves by padding - corner pixels
    shift = (corners - padding) / jnp.asarray(hw, jnp.float32)  # [B, 2] (dy, dx)
    return b - jnp.tile(shift, 2)[:, None, :]

  return _Op(draw=lambda key, shape: jax.random.randint(key, (shape[0], 2), 0, 2 * padding + 1),
             image=window(0.0), mask=window(mask_fill), boxes=boxes)


def random_crop(key: jax.Array, images: jax.Array, padding: int,
                mode: str = "zero") -> jax.Array:
  """Pads by ``padding`` pixels on every side and cuts a random window of the original size.

  ``mode``: ``"zero"`` (a random translation by up to ``padding`` pixels, filled with 0)
  or ``"reflect"`` (mirrored borders; needs ``padding < H, W``). ``[B, H, W, C]`` -> same.
  """
  if padding == 0:
    return images
  return _on_images(_crop_op(padding, mode), key, images)


def _rotate(angles: jax.Array, x: jax.Array, order: int, fill) -> jax.Array:
  """Rotates each of ``x`` ``[B, H, W]`` or ``[B, H, W, C]`` about its centre by ``angles``
  ``[B]`` (radians): each output pixel samples its rotated source with spline ``order``
  (0 nearest, 1 bilinear); pixels from outside are ``fill``."""
  h, w = x.shape[1:3]
  ys, xs = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32) - (h - 1) / 2,
                        jnp.arange(w, dtype=jnp.float32) - (w - 1) / 2, indexing="ij")

  def rotate(image, angle):  # [H, W, C]
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    coords = [cos * ys - sin * xs + (h - 1) / 2, sin * ys + cos * xs + (w - 1) / 2]
    sample = lambda channel: map_coordinates(channel, coords, order=order, mode="constant",
                                             cval=fill)
    return jax.vmap(sample, in_axes=-1, out_axes=-1)(image)

  if x.ndim == 3:
    return jax.vmap(rotate)(x[..., None], angles)[..., 0]
  return jax.vmap(rotate)(x, angles)


def _rotate_boxes(angles: jax.Array, boxes: jax.Array, hw: tuple[int, int]) -> jax.Array:
  """The boxes ``[B, M, 4]`` enclosing each box's corners rotated as :func:`_rotate` turns
  the image (not yet clipped)."""
  h, w = hw
  y0, x0, y1, x1 = (boxes[..., i] for i in range(4))
  ys = jnp.stack([y0, y0, y1, y1], -1) * h - h / 2  # [B, M, 4] corners, pixels from the centre
  xs = jnp.stack([x0, x1, x0, x1], -1) * w - w / 2
  cos, sin = (f(angles)[:, None, None] for f in (jnp.cos, jnp.sin))
  # Output pixel (y, x) shows the source (cos y - sin x, sin y + cos x): invert that.
  out_y = (cos * ys + sin * xs + h / 2) / h
  out_x = (cos * xs - sin * ys + w / 2) / w
  return jnp.stack([out_y.min(-1), out_x.min(-1), out_y.max(-1), out_x.max(-1)], -1)


def _rotation_op(max_degrees: float, mask_fill: int = 0) -> _Op:
  """A rotation uniform in ``±max_degrees``: bilinear for images, nearest for masks, the
  enclosing box of the rotated corners for boxes."""
  def draw(key, shape):
    return jnp.deg2rad(jax.random.uniform(key, shape[:1], minval=-max_degrees,
                                          maxval=max_degrees))

  return _Op(draw=draw, image=lambda a, x: _rotate(a, x, 1, 0.0),
             mask=lambda a, m: _rotate(a, m, 0, mask_fill), boxes=_rotate_boxes)


def random_rotation(key: jax.Array, images: jax.Array, max_degrees: float,
                    fill: float = 0.0) -> jax.Array:
  """Rotates each image about its centre by an angle uniform in ``±max_degrees``.

  Bilinear interpolation; pixels from outside the image are ``fill``. ``[B, H, W, C]``.
  """
  angles = _rotation_op(max_degrees).draw(key, images.shape[:3])
  return _rotate(angles, images, 1, fill)


def _factors(key: jax.Array, batch: int, strength: float) -> jax.Array:
  """Per-example factors uniform in ``[max(0, 1 - strength), 1 + strength]``, ``[B, 1, 1, 1]``."""
  return jax.random.uniform(key, (batch, 1, 1, 1), minval=max(0.0, 1.0 - strength),
                            maxval=1.0 + strength)


def _grayscale(images: jax.Array) -> jax.Array:
  """``[B, H, W, C]`` -> luma ``[B, H, W, 1]`` (C = 1 is returned as is)."""
  if images.shape[-1] == 1:
    return images
  return images @ jnp.asarray(_LUMA, images.dtype)[:, None]


def _brighten(factors: jax.Array, images: jax.Array) -> jax.Array:
  return jnp.clip(images * factors, 0.0, 1.0)


def _contrast(factors: jax.Array, images: jax.Array) -> jax.Array:
  mean = _grayscale(images).mean(axis=(1, 2, 3), keepdims=True)
  return jnp.clip(mean + factors * (images - mean), 0.0, 1.0)


def _saturate(factors: jax.Array, images: jax.Array) -> jax.Array:
  gray = _grayscale(images)
  return jnp.clip(gray + factors * (images - gray), 0.0, 1.0)


def _colour_op(adjust: Callable, strength: float) -> _Op:
  """``adjust(factors [B, 1, 1, 1], images)`` with factors in ``1 ± strength``; images only."""
  return _Op(draw=lambda key, shape: _factors(key, shape[0], strength), image=adjust)


def random_brightness(key: jax.Array, images: jax.Array, strength: float) -> jax.Array:
  """Scales each image by a factor in ``1 ± strength``. ``[B, H, W, C]`` -> same."""
  return _on_images(_colour_op(_brighten, strength), key, images)


def random_contrast(key: jax.Array, images: jax.Array, strength: float) -> jax.Array:
  """Moves each image towards / away from its mean gray level by a factor in ``1 ± strength``."""
  return _on_images(_colour_op(_contrast, strength), key, images)


def random_saturation(key: jax.Array, images: jax.Array, strength: float) -> jax.Array:
  """Blends each pixel with its gray value by a factor in ``1 ± strength`` (no-op for C = 1)."""
  return _on_images(_colour_op(_saturate, strength), key, images)


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


def _cutout_op(size: int) -> _Op:
  """A ``size`` x ``size`` square of zeros at a random centre per image; images only."""
  def draw(key, shape):
    b, h, w = shape
    cy, cx = (jax.random.randint(k, (b,), 0, n) for k, n in zip(jax.random.split(key), (h, w)))
    return cy - size // 2, cx - size // 2

  def erase(corner, images):
    top, left = corner
    return jnp.where(_box_mask(images.shape, top, left, top + size, left + size), 0.0, images)

  return _Op(draw=draw, image=erase)


def cutout(key: jax.Array, images: jax.Array, size: int) -> jax.Array:
  """Zeroes a ``size`` x ``size`` square at a random centre in each image (clipped at the
  borders, as in DeVries & Taylor 2017). ``[B, H, W, C]`` -> same."""
  return _on_images(_cutout_op(size), key, images)


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


def _mixup_op(alpha: float) -> _Op:
  """Each example blended with a random partner by a weight ~ Beta(alpha, alpha)."""
  def draw(key, shape):
    k_lam, k_perm = jax.random.split(key)
    return symmetric_beta(k_lam, alpha, shape[0]), jax.random.permutation(k_perm, shape[0])

  blend = lambda params, x: _blend(params[0], x, params[1])
  return _Op(draw=draw, image=blend, label=blend, refuses=("mask", "boxes"))


def _cutmix_op(alpha: float) -> _Op:
  """A random box from a random partner pasted into each example, covering about
  ``1 - lam`` of it for ``lam ~ Beta(alpha, alpha)``; labels mixed by the clipped box's area."""
  def draw(key, shape):
    k_lam, k_perm, k_y, k_x = jax.random.split(key, 4)
    b, h, w = shape
    lam = symmetric_beta(k_lam, alpha, b)
    cut_h = (h * jnp.sqrt(1 - lam)).astype(jnp.int32)
    cut_w = (w * jnp.sqrt(1 - lam)).astype(jnp.int32)
    cy, cx = jax.random.randint(k_y, (b,), 0, h), jax.random.randint(k_x, (b,), 0, w)
    top, bottom = jnp.clip(cy - cut_h // 2, 0, h), jnp.clip(cy + cut_h - cut_h // 2, 0, h)
    left, right = jnp.clip(cx - cut_w // 2, 0, w), jnp.clip(cx + cut_w - cut_w // 2, 0, w)
    inside = _box_mask(shape, top, left, bottom, right)
    kept = 1 - (bottom - top) * (right - left) / (h * w)
    return inside, kept, jax.random.permutation(k_perm, b)

  return _Op(draw=draw,
             image=lambda params, x: jnp.where(params[0], x[params[2]], x),
             label=lambda params, y: _blend(params[1], y, params[2]),
             refuses=("mask", "boxes"))


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
  op = _mixup_op(alpha)
  params = op.draw(key, images.shape[:3])
  return op.image(params, images), op.label(params, labels)


def cutmix(key: jax.Array, images: jax.Array, labels: jax.Array,
           alpha: float) -> tuple[jax.Array, jax.Array]:
  """Pastes a random box from a random partner into each example (Yun et al. 2019).

  The box covers about ``1 - lam`` of the image for ``lam ~ Beta(alpha, alpha)``; the
  labels are mixed by the box's actual area after clipping at the borders.
  Shapes as in :func:`mixup`.
  """
  op = _cutmix_op(alpha)
  params = op.draw(key, images.shape[:3])
  return op.image(params, images), op.label(params, labels)


# The augment config keys with their "off" defaults, in the order the pipeline applies them
# (the settings crop_mode and mask_fill apart).
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
    "mask_fill": 0,            # mask class of pixels from outside the image (crop, rotation):
}                              # 0 = background, or an ignore label such as 255

Augment = Callable[[jax.Array, dict], dict]


def augment_config(**settings):
  """An ``augment`` config section with every key (so each can be overridden from the
  command line), all off except ``settings``; e.g. ``augment_config(flip=True)``."""
  import ml_collections
  unknown = sorted(set(settings) - set(AUGMENT_DEFAULTS))
  if unknown:
    raise ConfigError(f"Unknown augment option(s) {', '.join(unknown)}; known: "
                      f"{', '.join(AUGMENT_DEFAULTS)}.")
  return ml_collections.ConfigDict({**AUGMENT_DEFAULTS, **settings})


def augment_kinds(batch_keys) -> dict[str, str]:
  """The kind of each of ``batch_keys`` under the names of ArrayData's splits (``"image"``,
  ``"label"``, ``"mask"``, ``"boxes"``, ``"box_valid"``); any other key is ``"other"``."""
  return {key: _ARRAY_DATA_KINDS.get(key, "other") for key in batch_keys}


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


def _keys_by_kind(kinds: dict[str, str]) -> dict[str, list[str]]:
  """``{kind: [batch keys]}`` for every kind in KINDS, with ``kinds`` checked."""
  by_kind = {kind: [] for kind in KINDS}
  for key, kind in kinds.items():
    if kind not in by_kind:
      close = difflib.get_close_matches(str(kind), KINDS, n=1, cutoff=0.5)
      hint = f" Did you mean {close[0]!r}?" if close else ""
      raise ConfigError(f"Unknown input kind {kind!r} for batch key {key!r}.{hint} "
                        f"Known: {', '.join(KINDS)}.")
    by_kind[kind].append(key)
  if not by_kind["image"]:
    raise ConfigError(f"The augment kinds {kinds} name no 'image' key; augmentation needs one "
                      f"(e.g. kinds=augment_kinds(batch)).")
  if len(by_kind["boxes"]) > 1 or len(by_kind["box_valid"]) != len(by_kind["boxes"]):
    raise ConfigError(f"The augment kinds {kinds} must name one 'box_valid' key with the "
                      f"'boxes' key (at most one of each): the validity flags of the boxes.")
  return by_kind


def _check_batch(batch: dict, by_kind: dict[str, list[str]]) -> tuple[int, int, int]:
  """Checks that ``batch`` holds every key that the kinds name, with the kind's shape.
  Returns ``(B, H, W)`` of the first image."""
  missing = [key for keys in by_kind.values() for key in keys if key not in batch]
  if missing:
    raise DataError(f"The batch has no {', '.join(map(repr, missing))}, which the augment "
                    f"kinds name; it has {', '.join(map(repr, batch))}. Pass kinds for the "
                    f"batch's own keys, e.g. augment_kinds(batch).")
  shape = batch[by_kind["image"][0]].shape[:3]
  boxes_shape = batch[by_kind["boxes"][0]].shape[:2] if by_kind["boxes"] else None
  fits = {"image": lambda s: len(s) == 4 and s[:3] == shape,
          "mask": lambda s: s == shape,
          "boxes": lambda s: len(s) == 3 and s[0] == shape[0] and s[2] == 4,
          "box_valid": lambda s: s == boxes_shape,
          "label": lambda s: len(s) in (1, 2) and s[0] == shape[0]}
  for kind, fit in fits.items():
    for key in by_kind[kind]:
      if not fit(tuple(batch[key].shape)):
        raise DataError(f"Batch key {key!r} (kind {kind!r}) has shape {list(batch[key].shape)}; "
                        f"it must be {_SHAPES[kind]} for the image's B, H, W = {list(shape)}.")
  return shape


def _clip_boxes(boxes: jax.Array, valid: jax.Array,
                hw: tuple[int, int]) -> tuple[jax.Array, jax.Array]:
  """Boxes ``[B, M, 4]`` clipped to the image, and their flags ``[B, M]``: a box with a side
  under MIN_BOX_SIDE_PIXELS left is no longer valid (and is zeroed, as padding is)."""
  boxes = jnp.clip(boxes, 0.0, 1.0)
  sides = (boxes[..., 2:] - boxes[..., :2]) * jnp.asarray(hw, jnp.float32)  # [B, M, 2]
  valid = valid & (sides >= MIN_BOX_SIDE_PIXELS).all(-1)
  return jnp.where(valid[..., None], boxes, 0.0), valid


def _soft_labels(batch: dict, label_keys: list[str], num_classes: int | None) -> dict:
  """``batch`` with int labels ``[B]`` one-hot to float32 ``[B, K]`` (soft labels stay)."""
  out = dict(batch)
  for key in label_keys:
    if out[key].ndim == 1:
      if num_classes is None:
        raise ConfigError(f"mixup/cutmix need soft labels, but batch key {key!r} holds class "
                          f"ids: pass make_augment(..., num_classes=K) to one-hot them.")
      out[key] = jax.nn.one_hot(out[key], num_classes)
  return out


def _apply(op: _Op, key: jax.Array, batch: dict, by_kind: dict[str, list[str]],
           shape: tuple[int, int, int]) -> dict:
  """``batch`` with ``op`` applied to each of its inputs, from parameters drawn once."""
  params = op.draw(key, shape)
  out = dict(batch)
  for kind, fn in (("image", op.image), ("mask", op.mask), ("label", op.label)):
    if fn is not None:
      for name in by_kind[kind]:
        out[name] = fn(params, out[name])
  if op.boxes is not None and by_kind["boxes"]:
    (boxes,), (valid,) = by_kind["boxes"], by_kind["box_valid"]
    out[boxes], out[valid] = _clip_boxes(op.boxes(params, out[boxes], shape[1:]), out[valid],
                                         shape[1:])
  return out


def make_augment(cfg, kinds: dict[str, str], num_classes: int | None = None) -> Augment:
  """Builds ``augment(key, batch) -> batch`` from an ``augment`` section.

  Args:
    cfg: a ConfigDict or dict with keys from AUGMENT_DEFAULTS (missing keys are off;
      unknown keys raise ConfigError), or None for no augmentation.
    kinds: the kind (one of KINDS) of each batch key that augmentation concerns, e.g.
      ``augment_kinds(batch)``; keys it does not name pass through unchanged.
    num_classes: ``K``, to one-hot int labels for mixup and cutmix.

  Returns:
    A pure, jittable function of a PRNG key and a dict batch (kinds and shapes as in the
    module docstring), returning a dict with the same keys. Each step uses
    ``fold_in(key, <its position in AUGMENT_DEFAULTS>)``, so switching one step on or off
    leaves the randomness of the others unchanged. Labels change only with mixup or cutmix,
    which turn them into soft labels ``[B, K]`` float32.

  Raises:
    ConfigError: for a bad config or ``kinds``, and for an op that cannot go with an input
      kind (mixup and cutmix with masks or boxes).
  """
  o = _options(cfg)
  by_kind = _keys_by_kind(kinds)
  fill = o["mask_fill"]
  ops = {  # config key that switches the op on -> the op
      "crop_padding": lambda: _crop_op(o["crop_padding"], o["crop_mode"], fill),
      "flip": _flip_op,
      "rotation_degrees": lambda: _rotation_op(o["rotation_degrees"], fill),
      "brightness": lambda: _colour_op(_brighten, o["brightness"]),
      "contrast": lambda: _colour_op(_contrast, o["contrast"]),
      "saturation": lambda: _colour_op(_saturate, o["saturation"]),
      "cutout_size": lambda: _cutout_op(o["cutout_size"]),
      "mixup_alpha": lambda: _mixup_op(o["mixup_alpha"]),
      "cutmix_alpha": lambda: _cutmix_op(o["cutmix_alpha"]),
  }
  active = {name: build() for name, build in ops.items() if o[name]}
  for name, op in active.items():
    for kind in op.refuses:
      if by_kind[kind]:
        what = {"mask": "masks", "boxes": "boxes"}[kind]
        raise ConfigError(f"augment.{name} cannot be used with {what} (batch keys "
                          f"{', '.join(by_kind[kind])}): it would mix the images but not "
                          f"their {what}. Set augment.{name}=0 for this dataset.")
  streams = {name: i for i, name in enumerate(AUGMENT_DEFAULTS)}
  mixes = [active.pop(name) for name in ("mixup_alpha", "cutmix_alpha") if name in active]
  steps = [(streams[name], op) for name, op in active.items()]

  def augment(key: jax.Array, batch: dict) -> dict:
    shape = _check_batch(batch, by_kind)
    batch = dict(batch)  # a new dict, even when no step is on
    for stream, op in steps:
      batch = _apply(op, jax.random.fold_in(key, stream), batch, by_kind, shape)
    if not mixes:
      return batch
    batch = _soft_labels(batch, by_kind["label"], num_classes)
    mix_key = jax.random.fold_in(key, streams["mixup_alpha"])
    if len(mixes) == 2:
      use_cutmix = jax.random.bernoulli(jax.random.fold_in(mix_key, 1))
      mixup_op, cutmix_op = mixes
      return jax.lax.cond(use_cutmix, lambda: _apply(cutmix_op, mix_key, batch, by_kind, shape),
                          lambda: _apply(mixup_op, mix_key, batch, by_kind, shape))
    return _apply(mixes[0], mix_key, batch, by_kind, shape)

  return augment

