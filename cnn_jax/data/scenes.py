"""Scenes with per-pixel masks and instance boxes, built on the fly (no download).

Two generators return a split as a dict of numpy arrays in :class:`ArrayData`'s format:

* :func:`shapes_scenes`: filled circles, squares, triangles and stars of random colour,
  size, rotation and position on noisy, striped or blotchy backgrounds. Objects are drawn
  in order, so later ones occlude earlier ones.
* :func:`mnist_scenes`: MNIST digits, randomly scaled and placed, blended in a random colour
  (or its complement, brightened or darkened to stand out from the photo under the digit)
  onto CIFAR-10 photos upsampled to the scene size; a digit's mask is its stroke (sampled
  intensity >= 50%).

Both are vectorised over the batch (a loop over object slots and shape kinds only) and
deterministic for a seed: 2,000 64x64 ``shapes`` scenes take about a second.

Keys of a split (``N`` scenes of ``S x S`` pixels, at most ``M`` objects each):

* ``"image"`` uint8 ``[N, S, S, 3]``.
* ``"mask"`` int32 ``[N, S, S]``: 0 background, ``c + 1`` for a pixel of object class ``c``.
* ``"boxes"`` float32 ``[N, M, 4]``: ``(y_min, x_min, y_max, x_max)`` of the *visible*
  pixels of each instance, as fractions of the height and width; the edges are pixel
  borders, so a box holding pixel rows ``r0..r1`` has ``y_min = r0 / S`` and
  ``y_max = (r1 + 1) / S``.
* ``"box_classes"`` int32 ``[N, M]``: object classes ``0 .. num_classes - 1`` (mask class
  minus one).
* ``"box_valid"`` bool ``[N, M]``: the real boxes, first in every row (in drawing order).
  An instance that later objects hide completely has no box. Padding rows hold zeros.

The registered sources ``shapes`` and ``mnist_scenes`` wrap them for ``dataset.name``.
"""

from collections.abc import Sequence

import ml_collections
import numpy as np

from cnn_jax.data.sources import SOURCES, ArrayData
from cnn_jax.errors import DataError

SHAPE_NAMES = ("circle", "square", "triangle", "star")
STAR_POINTS = 5
STAR_INNER_RADIUS = 0.45  # of the outer radius
BACKGROUND_KINDS = ("noise", "stripes", "blotches")
MIN_INK_CONTRAST = 60  # levels of luminance between a pasted digit and the photo under it


def _check_counts(num: int, size: int, max_objects: int, min_objects: int) -> None:
  if num < 0 or size < 8:
    raise DataError(f"scenes need num >= 0 and size >= 8, got num={num}, size={size}.")
  if not 1 <= min_objects <= max_objects:
    raise DataError(f"need 1 <= min objects <= max objects, got {min_objects} and "
                    f"{max_objects}.")


def _hsv_to_rgb(hue: np.ndarray, saturation: np.ndarray, value: np.ndarray) -> np.ndarray:
  """``[...]`` hue, saturation, value in [0, 1] -> ``[..., 3]`` RGB in [0, 1]."""
  k = (np.asarray([5.0, 3.0, 1.0]) + hue[..., None] * 6.0) % 6.0
  ramp = np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
  return value[..., None] * (1.0 - saturation[..., None] * ramp)


def _interpolation_matrix(in_size: int, out_size: int) -> np.ndarray:
  """``[out_size, in_size]`` bilinear weights (pixel centres aligned, edges clamped)."""
  centres = np.clip((np.arange(out_size) + 0.5) * in_size / out_size - 0.5, 0, in_size - 1)
  low = np.floor(centres).astype(int)
  high = np.minimum(low + 1, in_size - 1)
  frac = centres - low
  weights = np.zeros((out_size, in_size), np.float32)
  np.add.at(weights, (np.arange(out_size), low), 1.0 - frac)
  np.add.at(weights, (np.arange(out_size), high), frac)
  return weights


def resize_bilinear(images: np.ndarray, size: int) -> np.ndarray:
  """Bilinear resize ``[N, h, w, C] -> [N, size, size, C]`` float32, two matrix products."""
  rows = _interpolation_matrix(images.shape[1], size)
  cols = _interpolation_matrix(images.shape[2], size)
  return np.einsum("nhwc,ih,jw->nijc", images.astype(np.float32), rows, cols, optimize=True)


def _backgrounds(rng: np.random.Generator, num: int, size: int) -> np.ndarray:
  """``[N, S, S, 3]`` float32 backgrounds in 0..255 of the kinds in ``BACKGROUND_KINDS``."""
  base = _hsv_to_rgb(rng.random(num), rng.uniform(0.0, 0.5, num), rng.uniform(0.2, 0.8, num))
  images = np.broadcast_to(255.0 * base[:, None, None, :], (num, size, size, 3)).astype(
      np.float32)
  kind = rng.integers(len(BACKGROUND_KINDS), size=num)
  coords = np.arange(size, dtype=np.float32) / size
  noisy = np.flatnonzero(kind == 0)
  images[noisy] += rng.normal(0.0, 1.0, (len(noisy), 1, 1, 1)).astype(np.float32) * 10 + (
      rng.random((len(noisy), size, size, 3), np.float32) - 0.5) * 100
  striped = np.flatnonzero(kind == 1)
  angle = rng.uniform(0, np.pi, len(striped))
  frequency = rng.uniform(2.0, 8.0, len(striped))
  phase = rng.uniform(0, 2 * np.pi, len(striped))
  along = (coords[None, :, None] * np.sin(angle)[:, None, None]
           + coords[None, None, :] * np.cos(angle)[:, None, None])
  wave = np.sin(2 * np.pi * frequency[:, None, None] * along + phase[:, None, None])
  tint = rng.uniform(-50, 50, (len(striped), 1, 1, 3))
  images[striped] += (wave[..., None] * tint).astype(np.float32)
  blotchy = np.flatnonzero(kind == 2)
  coarse = rng.uniform(-60, 60, (len(blotchy), 4, 4, 3))
  images[blotchy] += resize_bilinear(coarse, size)
  return images


def _shape_inside(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
  """Whether points ``(u, v)`` in a shape's own frame (radius 1) lie inside shape ``kind``."""
  name = SHAPE_NAMES[kind]
  if name == "circle":
    return u * u + v * v <= 1.0
  if name == "square":  # the same area as the circle
    half = np.sqrt(np.pi) / 2
    return (np.abs(u) <= half) & (np.abs(v) <= half)
  if name == "triangle":  # equilateral, circumradius 1.2 (inradius 0.6)
    inside = np.ones(u.shape, bool)
    for normal in np.deg2rad([30.0, 150.0, 270.0]).astype(np.float32):
      inside &= u * np.cos(normal) + v * np.sin(normal) <= 0.6
    return inside
  # star: fold the angle onto [0, pi / points] and test the edge from the outer vertex
  # (1.2, 0) to the inner vertex at angle pi / points.
  sector = np.pi / STAR_POINTS
  angle = np.abs((np.arctan2(v, u) + sector) % (2 * sector) - sector)
  radius = np.hypot(u, v)
  qx, qy = radius * np.cos(angle), radius * np.sin(angle)
  outer = 1.2
  inner_x = outer * STAR_INNER_RADIUS * np.cos(sector)
  inner_y = outer * STAR_INNER_RADIUS * np.sin(sector)
  return (inner_x - outer) * qy - inner_y * (qx - outer) >= 0


def boxes_from_instances(instances: np.ndarray, classes: np.ndarray) -> dict[str, np.ndarray]:
  """Boxes of the visible pixels of each instance, valid boxes first.

  Args:
    instances: int ``[N, S, S]`` instance map: 0 nothing, ``m + 1`` for object slot ``m``.
    classes: int ``[N, M]`` object class of each slot.

  Returns:
    ``"boxes"`` float32 ``[N, M, 4]``, ``"box_classes"`` int32 ``[N, M]`` and
    ``"box_valid"`` bool ``[N, M]`` as described in the module docstring.
  """
  num, height, width = instances.shape
  slots = classes.shape[1]
  boxes = np.zeros((num, slots, 4), np.float32)
  valid = np.zeros((num, slots), bool)
  for m in range(slots):
    visible = instances == m + 1
    rows, cols = visible.any(axis=2), visible.any(axis=1)
    valid[:, m] = rows.any(axis=1)
    boxes[:, m] = np.stack([
        np.argmax(rows, axis=1) / height, np.argmax(cols, axis=1) / width,
        (height - np.argmax(rows[:, ::-1], axis=1)) / height,
        (width - np.argmax(cols[:, ::-1], axis=1)) / width], axis=-1)
  order = np.argsort(~valid, axis=1, kind="stable")
  valid = np.take_along_axis(valid, order, axis=1)
  boxes = np.where(valid[..., None], np.take_along_axis(boxes, order[..., None], axis=1), 0.0)
  box_classes = np.where(valid, np.take_along_axis(classes, order, axis=1), 0)
  return {"boxes": boxes.astype(np.float32), "box_classes": box_classes.astype(np.int32),
          "box_valid": valid}


def _finish(images: np.ndarray, instances: np.ndarray, classes: np.ndarray) -> dict:
  """The split dict from float images, the instance map and the slot classes."""
  instance_classes = np.concatenate([np.zeros((len(classes), 1), classes.dtype), classes + 1],
                                    axis=1)
  mask = np.take_along_axis(instance_classes, instances.reshape(len(instances), -1), axis=1)
  return {"image": np.clip(images + 0.5, 0, 255, out=images).astype(np.uint8),
          "mask": mask.reshape(instances.shape).astype(np.int32),
          **boxes_from_instances(instances, classes)}


def shapes_scenes(num: int, size: int = 64, seed: int | Sequence[int] = 0,
                  max_objects: int = 4, min_objects: int = 1,
                  radius_range: tuple[float, float] = (0.1, 0.25),
                  shapes: Sequence[str] = SHAPE_NAMES) -> dict[str, np.ndarray]:
  """``num`` random scenes of filled shapes (see the module docstring for the keys).

  Args:
    num: number of scenes ``N``.
    size: their height and width ``S`` in pixels.
    seed: seed of ``np.random.default_rng`` (an int or a sequence of ints).
    max_objects: slots per scene ``M``; each scene has ``min_objects .. max_objects``.
    min_objects: the fewest objects in a scene.
    radius_range: object radius as fractions of ``size``.
    shapes: which of ``SHAPE_NAMES`` to draw; object class ``c`` is ``shapes[c]``.

  Returns:
    The split dict: ``image``, ``mask``, ``boxes``, ``box_classes``, ``box_valid``.
  """
  _check_counts(num, size, max_objects, min_objects)
  unknown = [s for s in shapes if s not in SHAPE_NAMES]
  if unknown or not shapes:
    raise DataError(f"unknown shapes {unknown}; choose from {', '.join(SHAPE_NAMES)}.")
  kinds = np.asarray([SHAPE_NAMES.index(s) for s in shapes])
  rng = np.random.default_rng(seed)
  images = _backgrounds(rng, num, size)
  count = rng.integers(min_objects, max_objects + 1, size=num)
  present = np.arange(max_objects)[None, :] < count[:, None]
  classes = rng.integers(len(kinds), size=(num, max_objects))
  radius = (rng.uniform(*radius_range, (num, max_objects)) * size).astype(np.float32)
  centre = (rng.uniform(0.0, 1.0, (num, max_objects, 2)) * (size - radius[..., None]) + (
      radius[..., None] / 2)).astype(np.float32)
  rotation = rng.uniform(0, 2 * np.pi, (num, max_objects)).astype(np.float32)
  colour = 255.0 * _hsv_to_rgb(rng.random((num, max_objects)),
                               rng.uniform(0.5, 1.0, (num, max_objects)),
                               rng.uniform(0.5, 1.0, (num, max_objects)))
  instances = np.zeros((num, size, size), np.int32)
  pixel = np.arange(size, dtype=np.float32) + 0.5
  for m in range(max_objects):
    for c, kind in enumerate(kinds):
      rows = np.flatnonzero(present[:, m] & (classes[:, m] == c))
      if not len(rows):
        continue
      dy = (pixel[None, :, None] - centre[rows, m, 0, None, None]) / radius[rows, m, None, None]
      dx = (pixel[None, None, :] - centre[rows, m, 1, None, None]) / radius[rows, m, None, None]
      cos, sin = np.cos(rotation[rows, m])[:, None, None], np.sin(rotation[rows, m])[:, None, None]
      inside = _shape_inside(kind, cos * dx + sin * dy, cos * dy - sin * dx)
      instances[rows] = np.where(inside, m + 1, instances[rows])
  palette = np.concatenate([np.zeros((num, 1, 3)), colour], axis=1).astype(np.float32)
  painted = np.take_along_axis(palette, instances.reshape(num, -1, 1), axis=1)
  images = np.where(instances[..., None] > 0, painted.reshape(images.shape), images)
  images += (rng.random(images.shape, np.float32) - 0.5) * 20  # sensor noise on everything
  return _finish(images, instances, np.where(present, classes, 0))


def mnist_scenes(mnist_images: np.ndarray, mnist_labels: np.ndarray, cifar_images: np.ndarray,
                 num: int, size: int = 64, seed: int | Sequence[int] = 0, max_digits: int = 3,
                 min_digits: int = 1,
                 digit_size_range: tuple[float, float] = (0.35, 0.6)) -> dict[str, np.ndarray]:
  """``num`` scenes of MNIST digits on CIFAR-10 photos (see the module docstring for keys).

  Args:
    mnist_images: uint8 ``[D, 28, 28]`` or ``[D, 28, 28, 1]`` digits (white on black).
    mnist_labels: int ``[D]`` their digits; object class = digit, mask class = digit + 1.
    cifar_images: uint8 ``[P, h, w, 3]`` background photos, resized to ``size``.
    num: number of scenes ``N``.
    size: their height and width ``S``.
    seed: seed of ``np.random.default_rng``.
    max_digits: slots per scene ``M``; each scene has ``min_digits .. max_digits``.
    min_digits: the fewest digits in a scene.
    digit_size_range: the side of a pasted 28x28 digit as fractions of ``size``.

  Returns:
    The split dict: ``image``, ``mask``, ``boxes``, ``box_classes``, ``box_valid``.
  """
  _check_counts(num, size, max_digits, min_digits)
  digits = np.asarray(mnist_images).reshape(len(mnist_images), *np.shape(mnist_images)[1:3])
  labels = np.asarray(mnist_labels).reshape(-1)
  if len(digits) == 0 or len(digits) != len(labels) or len(cifar_images) == 0:
    raise DataError(f"mnist_scenes needs digits with one label each and at least one photo; "
                    f"got {len(digits)} digits, {len(labels)} labels, {len(cifar_images)} "
                    "photos.")
  rng = np.random.default_rng(seed)
  images = resize_bilinear(cifar_images[rng.integers(len(cifar_images), size=num)], size)
  count = rng.integers(min_digits, max_digits + 1, size=num)
  present = np.arange(max_digits)[None, :] < count[:, None]
  picks = rng.integers(len(digits), size=(num, max_digits))
  side = rng.uniform(*digit_size_range, (num, max_digits)) * size
  corner = rng.uniform(0.0, 1.0, (num, max_digits, 2)) * (size - side[..., None])
  colour = rng.uniform(0, 255, (num, max_digits, 3))
  instances = np.zeros((num, size, size), np.int32)
  pixel = np.arange(size, dtype=np.float32) + 0.5
  digit_size = digits.shape[1]
  luminance = np.asarray([0.299, 0.587, 0.114])
  for m in range(max_digits):
    rows = np.flatnonzero(present[:, m])
    scale = digit_size / side[rows, m, None]
    # Digit pixel coordinates of every scene pixel (pixel centres), per scene.
    ys = (pixel[None, :] - corner[rows, m, 0, None]) * scale - 0.5
    xs = (pixel[None, :] - corner[rows, m, 1, None]) * scale - 0.5
    alpha = _sample_digits(digits[picks[rows, m]], ys, xs)
    inside = alpha >= 0.5
    # Pick the colour or its complement, whichever stands out more from the photo under it.
    area = np.maximum(inside.sum(axis=(1, 2)), 1)
    under = (images[rows] * inside[..., None]).sum(axis=(1, 2)) / area[:, None]
    ink = colour[rows, m]
    flip = np.abs((ink - under) @ luminance) < np.abs((255 - ink - under) @ luminance)
    ink = np.where(flip[:, None], 255 - ink, ink)
    # Still too close in brightness: shift all channels away from the photo's brightness.
    difference = (ink - under) @ luminance
    direction = np.where(difference != 0, np.sign(difference), np.sign(127.5 - under @ luminance))
    shortfall = np.maximum(MIN_INK_CONTRAST - np.abs(difference), 0)
    ink = np.clip(ink + (direction * shortfall)[:, None], 0, 255)
    images[rows] = images[rows] * (1 - alpha[..., None]) + ink[:, None, None, :] * alpha[..., None]
    instances[rows] = np.where(inside, m + 1, instances[rows])
  classes = np.where(present, labels[picks], 0).astype(np.int32)
  return _finish(images, instances, classes)


def _sample_digits(digits: np.ndarray, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
  """Bilinear samples of ``digits`` ``[K, d, d]`` (0..255) at the grid ``ys [K, S]`` x
  ``xs [K, S]`` of digit coordinates -> ``[K, S, S]`` in [0, 1], zero outside the digit."""
  d = digits.shape[1]
  padded = np.pad(digits.astype(np.float32) / 255.0, ((0, 0), (1, 1), (1, 1)))
  ys, xs = np.clip(ys + 1, 0, d + 0.999), np.clip(xs + 1, 0, d + 0.999)  # into the padding
  y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
  fy, fx = (ys - y0)[:, :, None], (xs - x0)[:, None, :]
  k = np.arange(len(digits))[:, None, None]

  def at(y, x):
    return padded[k, y[:, :, None], x[:, None, :]]

  return ((1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1))
          + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1)))


@SOURCES.register("shapes")
def load_shapes(cfg: ml_collections.ConfigDict) -> ArrayData:
  """Procedural shapes scenes for segmentation and detection, built from ``dataset.seed``.

  Config: ``dataset.num_train`` (default 2000), ``num_test`` (500), ``image_size`` (64),
  ``max_objects`` (4), ``seed`` (0). The train and test scenes come from different seeds.
  Class names are those of the mask: ``background`` then the shapes.
  """
  seed = int(cfg.get("seed", 0))
  options = {"size": int(cfg.get("image_size", 64)), "max_objects": int(cfg.get("max_objects", 4))}
  train = shapes_scenes(int(cfg.get("num_train", 2000)), seed=(seed, 0), **options)
  test = shapes_scenes(int(cfg.get("num_test", 500)), seed=(seed, 1), **options)
  return ArrayData(train, test, ["background", *SHAPE_NAMES])


@SOURCES.register("mnist_scenes")
def load_mnist_scenes(cfg: ml_collections.ConfigDict) -> ArrayData:
  """MNIST digits on CIFAR-10 photos, from ``mnist.npz`` and ``cifar10_jpeg.npz``.

  Train scenes use the MNIST and CIFAR-10 train sets, test scenes their test sets. Config:
  ``dataset.num_train`` (default 10000), ``num_test`` (2000), ``image_size`` (64),
  ``max_digits`` (3), ``seed`` (0), ``mnist_file`` (``"mnist.npz"``), ``cifar_file``
  (``"cifar10_jpeg.npz"``) and ``cache_dir`` (for the decoded CIFAR images), the files
  being looked up in the data directory. Class names: ``background``, ``"0"`` .. ``"9"``.
  """
  from cnn_jax.data.local_files import load_cifar10_jpeg
  from cnn_jax.data.sources import load_npz
  mnist_cfg = ml_collections.ConfigDict(
      {"file": cfg.get("mnist_file") or "mnist.npz", "data_dir": cfg.get("data_dir")})
  cifar_cfg = ml_collections.ConfigDict(
      {"file": cfg.get("cifar_file") or "cifar10_jpeg.npz", "data_dir": cfg.get("data_dir"),
       "cache_dir": cfg.get("cache_dir"), "decode_workers": cfg.get("decode_workers", 1)})
  mnist, cifar = load_npz(mnist_cfg), load_cifar10_jpeg(cifar_cfg)
  if mnist.test is None or cifar.test is None:
    raise DataError("mnist_scenes needs the test splits of both MNIST and CIFAR-10 "
                    "(x_test / test_jpeg in the npz files).")
  seed = int(cfg.get("seed", 0))
  options = {"size": int(cfg.get("image_size", 64)), "max_digits": int(cfg.get("max_digits", 3))}
  train = mnist_scenes(mnist.train_images, mnist.train_labels, cifar.train_images,
                       int(cfg.get("num_train", 10000)), seed=(seed, 0), **options)
  test = mnist_scenes(mnist.test_images, mnist.test_labels, cifar.test_images,
                      int(cfg.get("num_test", 2000)), seed=(seed, 1), **options)
  return ArrayData(train, test, ["background", *(str(d) for d in range(10))])
