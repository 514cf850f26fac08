"""On-device augmentation (pure jnp, jittable) over dict batches, and the on-device batch
gather."""

import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import stats

from cnn_jax.data import augment as A
from cnn_jax.data import device_data
from cnn_jax.errors import ConfigError, DataError

B, H, W, C, K = 16, 8, 10, 3, 4
KEY = jax.random.key(0)
IMAGES = jax.random.uniform(jax.random.key(1), (B, H, W, C), minval=0.05, maxval=1.0)
LABELS = jax.nn.one_hot(jnp.arange(B) % K, K)
CLASSIFICATION = {"image": "image", "label": "label"}

FULL = dict(crop_padding=2, crop_mode="reflect", flip=True, rotation_degrees=10.0,
            brightness=0.3, contrast=0.3, saturation=0.3, cutout_size=3, mixup_alpha=0.4,
            cutmix_alpha=1.0)
COLOUR_CUTOUT = dict(brightness=0.3, contrast=0.3, saturation=0.3, cutout_size=3)
IMAGE_OPS = dict(crop_padding=2, flip=True, rotation_degrees=10.0, **COLOUR_CUTOUT)


@functools.lru_cache(maxsize=None)
def jitted(**cfg):
  return jax.jit(A.make_augment(cfg, CLASSIFICATION))


def run(**cfg):
  out = jitted(**cfg)(KEY, {"image": IMAGES, "label": LABELS})
  return out["image"], out["label"]


def jit(fn, num_static=1):
  """``fn(key, images, *hyper_parameters)`` jitted with static hyper-parameters."""
  return jax.jit(fn, static_argnums=tuple(range(2, 2 + num_static)))


# Summaries of (images, labels) that make_augment returned for KEY, IMAGES and LABELS before
# it took dict batches: (sum of the images, sum of images * weights, sum of labels * weights).
BEFORE_DICT_BATCHES = {
    "full": (FULL, 1667.5879, 5005.0865, 24.525),
    "image_ops": (IMAGE_OPS, 1275.1652, 3845.106, 24.0),
    "mixup": (dict(mixup_alpha=0.4), 1998.929, 6027.9115, 26.33537),
    "cutmix": (dict(cutmix_alpha=1.0), 1990.1526, 6031.5224, 24.525),
}


def check_unchanged_by_the_dict_interface(name, images, labels):
  _, image_sum, weighted_sum, label_sum = BEFORE_DICT_BATCHES[name]
  x, y = (np.asarray(v, np.float64) for v in (images, labels))
  weights = np.arange(x.size).reshape(x.shape) % 7
  np.testing.assert_allclose([x.sum(), (x * weights).sum()], [image_sum, weighted_sum],
                             rtol=0, atol=2e-3)
  np.testing.assert_allclose((y * (np.arange(y.size).reshape(y.shape) % 5)).sum(), label_sum,
                             rtol=0, atol=1e-4)


def test_full_pipeline_under_jit_and_vmap():
  """One compile: every step, vmapped over a leading axis of 2 batches with their own keys."""
  aug = jax.jit(jax.vmap(A.make_augment(FULL, CLASSIFICATION)))
  keys = jnp.stack([KEY, jax.random.key(1)])
  batch = {"image": jnp.stack([IMAGES, IMAGES]), "label": jnp.stack([LABELS, LABELS])}
  out = aug(keys, batch)
  x, y = out["image"], out["label"]
  assert x.shape == (2, B, H, W, C) and x.dtype == jnp.float32
  assert y.shape == (2, B, K) and y.dtype == jnp.float32
  np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-6)
  again = aug(keys, batch)  # deterministic given the key
  np.testing.assert_array_equal(x, again["image"])
  np.testing.assert_array_equal(y, again["label"])
  assert not np.allclose(x[0], x[1])  # another key, other augmentations
  check_unchanged_by_the_dict_interface("full", x[0], y[0])


@pytest.mark.parametrize("name", ["mixup", "cutmix"])
def test_mixing_results_are_unchanged_by_the_dict_interface(name):
  check_unchanged_by_the_dict_interface(name, *run(**BEFORE_DICT_BATCHES[name][0]))


def test_pipeline_is_the_per_op_functions_with_their_streams():
  """Bitwise: each step is the per-op function on fold_in(key, position in AUGMENT_DEFAULTS)."""
  stream = {name: i for i, name in enumerate(A.AUGMENT_DEFAULTS)}
  fold = lambda name: jax.random.fold_in(KEY, stream[name])

  @jax.jit
  def by_hand(x):
    x = A.random_crop(fold("crop_padding"), x, 2)
    x = A.random_flip(fold("flip"), x)
    x = A.random_rotation(fold("rotation_degrees"), x, 10.0)
    for name, op in (("brightness", A.random_brightness), ("contrast", A.random_contrast),
                     ("saturation", A.random_saturation)):
      x = op(fold(name), x, 0.3)
    return A.cutout(fold("cutout_size"), x, 3)

  images, labels = run(**IMAGE_OPS)
  np.testing.assert_array_equal(images, by_hand(IMAGES))
  check_unchanged_by_the_dict_interface("image_ops", images, labels)


def test_empty_config_is_identity():
  batch = {"image": IMAGES, "label": LABELS, "id": jnp.arange(B)}
  out = A.make_augment(None, A.augment_kinds(batch))(KEY, batch)
  assert out.keys() == batch.keys() and all(out[k] is batch[k] for k in batch)


def test_augment_kinds():
  assert A.augment_kinds(["image", "mask", "boxes", "box_valid", "box_classes", "label",
                          "weight"]) == {
      "image": "image", "mask": "mask", "boxes": "boxes", "box_valid": "box_valid",
      "box_classes": "other", "label": "label", "weight": "other"}


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
  either = A.make_augment(dict(mixup_alpha=0.4, cutmix_alpha=1.0),  # lax.cond picks one
                          CLASSIFICATION)
  mixes = jax.jit(lambda k: (A.mixup(k, images, onehot, 0.4), A.cutmix(k, images, onehot, 1.0),
                             tuple(either(k, {"image": images, "label": onehot}).values())))
  for x, y in mixes(KEY):
    assert x.shape == images.shape and y.shape == (B, B)
    np.testing.assert_allclose(y.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(x.mean((1, 2, 3)), y @ ids, rtol=1e-5, atol=1e-4)
    assert ((y > 0) & (y < 1)).any()  # some examples really are mixed


def test_int_labels_are_one_hot_for_mixing_only():
  ids = jnp.arange(B) % K
  mixing = A.make_augment(dict(mixup_alpha=0.4), CLASSIFICATION, num_classes=K)
  out = mixing(KEY, {"image": IMAGES, "label": ids})
  np.testing.assert_allclose(out["label"], run(mixup_alpha=0.4)[1], rtol=1e-6)
  flipping = A.make_augment(dict(flip=True), CLASSIFICATION, num_classes=K)
  assert flipping(KEY, {"image": IMAGES, "label": ids})["label"] is ids
  with pytest.raises(ConfigError, match="num_classes"):
    A.make_augment(dict(mixup_alpha=0.4), CLASSIFICATION)(KEY, {"image": IMAGES, "label": ids})


def test_toggling_one_step_keeps_the_others_randomness():
  only_flip = run(flip=True)[0]
  flip_then_cutout = run(flip=True, cutout_size=3)[0]
  keep = flip_then_cutout != 0
  np.testing.assert_array_equal(np.asarray(flip_then_cutout)[keep], np.asarray(only_flip)[keep])


# Detection and segmentation scenes: each example shows one bright bar of pixels; its mask is
# 1 on the bar, its first box encloses it, and its second box is padding.
DETECTION = A.augment_kinds(["image", "mask", "boxes", "box_valid", "box_classes"])


def bar_scene(rows: slice, cols: slice, h: int = H, w: int = W, n: int = B) -> dict:
  """A batch of ``n`` copies of a ``[h, w, 1]`` image with 1.0 on ``rows`` x ``cols``."""
  image = np.zeros((n, h, w, 1), np.float32)
  image[:, rows, cols] = 1.0
  box = [rows.start / h, cols.start / w, rows.stop / h, cols.stop / w]
  return {"image": jnp.asarray(image), "mask": jnp.asarray(image[..., 0], jnp.int32),
          "boxes": jnp.asarray(np.tile([box, [0.0] * 4], (n, 1, 1)), jnp.float32),
          "box_valid": jnp.tile(jnp.asarray([True, False]), (n, 1)),
          "box_classes": jnp.tile(jnp.asarray([3, 0], jnp.int32), (n, 1))}


def augmented(cfg: dict, batch: dict) -> dict:
  return {k: np.asarray(v) for k, v in A.make_augment(cfg, DETECTION)(KEY, batch).items()}


def enclosing_box(pixels: np.ndarray) -> np.ndarray:
  """The box of the True pixels of a ``[H, W]`` array, as fractions."""
  rows, cols = np.nonzero(pixels)
  h, w = pixels.shape
  return np.array([rows.min() / h, cols.min() / w, (rows.max() + 1) / h, (cols.max() + 1) / w])


def check_boxes_follow_the_bar(out: dict, batch: dict) -> list:
  """Each example's first box encloses its visible bar pixels and is valid iff some are
  left; the padding box stays invalid and zero. Returns the valid boxes."""
  boxes = []
  for i in range(len(out["image"])):
    bar = out["image"][i, ..., 0] == 1.0
    assert out["box_valid"][i, 0] == bar.any(), i
    if bar.any():
      np.testing.assert_allclose(out["boxes"][i, 0], enclosing_box(bar), atol=1e-6)
      boxes.append(tuple(np.round(out["boxes"][i, 0], 4)))
    else:
      np.testing.assert_array_equal(out["boxes"][i, 0], 0.0)
    assert not out["box_valid"][i, 1]
    np.testing.assert_array_equal(out["boxes"][i, 1], 0.0)
  np.testing.assert_array_equal(out["box_classes"], batch["box_classes"])  # kind "other"
  return boxes


@pytest.mark.parametrize("mode", ["zero", "reflect"])
def test_flip_and_crop_move_mask_and_box_with_the_image(mode):
  batch = bar_scene(slice(2, 6), slice(2, 3))  # a one-pixel-wide vertical bar, left of centre
  out = augmented(dict(crop_padding=2, crop_mode=mode, flip=True), batch)
  assert out["mask"].dtype == np.int32
  np.testing.assert_array_equal(out["mask"], out["image"][..., 0] == 1.0)
  if mode == "zero":  # (reflect adds mirrored copies of the bar that have no box)
    boxes = check_boxes_follow_the_bar(out, batch)
    assert len(boxes) == B and len(set(boxes)) > 4
    assert {box[1] < 0.5 for box in boxes} == {True, False}  # some flipped, some not


def test_box_cropped_out_becomes_invalid_and_clipped_boxes_shrink():
  batch = bar_scene(slice(2, 6), slice(8, 10))  # two pixels wide, at the right border
  out = augmented(dict(crop_padding=2), batch)
  np.testing.assert_array_equal(out["mask"], out["image"][..., 0] == 1.0)
  widths = {round(float(box[3] - box[1]), 4) for box in check_boxes_follow_the_bar(out, batch)}
  assert widths == {0.1, 0.2}  # cut to one column, or whole
  assert not out["box_valid"][:, 0].all()  # and pushed out of the image


def test_rotation_moves_mask_and_box_with_the_image():
  h = w = 11
  batch = bar_scene(slice(2, 4), slice(6, 8), h, w)  # a 2x2 square, up and right
  out = augmented(dict(rotation_degrees=40.0), batch)
  assert set(np.unique(out["mask"])) == {0, 1}  # nearest neighbour, no blends
  centres = lambda pixels: (np.argwhere(pixels) + 0.5) / [h, w]  # [N, 2] (y, x) fractions
  for i in range(B):
    y0, x0, y1, x1 = out["boxes"][i, 0]
    assert out["box_valid"][i, 0]
    for pixels in (out["mask"][i] == 1, out["image"][i, ..., 0] > 0.5):
      yx = centres(pixels)
      assert len(yx) and ((yx >= [y0, x0]) & (yx <= [y1, x1])).all(), i
    image = out["image"][i, ..., 0]
    centroid = (centres(image > 0) * image[image > 0][:, None]).sum(0) / image.sum()
    np.testing.assert_allclose(centroid, [(y0 + y1) / 2, (x0 + x1) / 2], atol=0.35 / h)
    area = (y1 - y0) * (x1 - x0) * h * w
    assert 4 - 1e-4 <= area <= 8 + 1e-4  # the enclosing box of a turned 2x2 square
  assert len({tuple(np.round(b, 4)) for b in out["boxes"][:, 0]}) > 4


def test_mask_fill_marks_the_pixels_from_outside():
  batch = bar_scene(slice(0, H), slice(0, W))  # all ones
  out = augmented(dict(crop_padding=2, mask_fill=255), batch)
  outside = out["image"][..., 0] == 0.0
  assert outside.any() and not outside.all()
  np.testing.assert_array_equal(out["mask"], np.where(outside, 255, 1))


def test_colour_ops_and_cutout_touch_only_images():
  batch = bar_scene(slice(2, 6), slice(2, 3))
  batch["image"] = IMAGES
  out = augmented(COLOUR_CUTOUT, batch)
  assert not np.allclose(out["image"], IMAGES)
  for key in ("mask", "boxes", "box_valid", "box_classes"):
    np.testing.assert_array_equal(out[key], batch[key])


@pytest.mark.parametrize("option", ["mixup_alpha", "cutmix_alpha"])
@pytest.mark.parametrize("kind", ["mask", "boxes"])
def test_mixing_with_masks_or_boxes_is_a_config_error(option, kind):
  kinds = {"image": "image", "label": "label", kind: kind} | (
      {"box_valid": "box_valid"} if kind == "boxes" else {})
  with pytest.raises(ConfigError, match=f"augment.{option} cannot be used with {kind}"):
    A.make_augment({option: 0.4}, kinds)


@pytest.mark.parametrize("kinds,match", [
    ({"image": "img"}, "Did you mean 'image'"), ({"mask": "mask"}, "no 'image' key"),
    ({"image": "image", "boxes": "boxes"}, "box_valid"),
])
def test_kinds_errors(kinds, match):
  with pytest.raises(ConfigError, match=match):
    A.make_augment(dict(flip=True), kinds)


def test_batch_errors():
  scene = bar_scene(slice(2, 6), slice(2, 3))
  augment = A.make_augment(dict(flip=True), DETECTION)
  with pytest.raises(DataError, match="no 'mask'"):
    augment(KEY, {k: v for k, v in scene.items() if k != "mask"})
  with pytest.raises(DataError, match=r"'mask'.*\[B, H, W\]"):
    augment(KEY, scene | {"mask": scene["mask"][:, :-1]})


@pytest.mark.parametrize("cfg,match", [
    ({"flipp": True}, "augment.flip"), ({"crop_mode": "wrap"}, "crop_mode"),
    ({"crop_padding": -1}, "crop_padding"), ({"cutout_size": 2.5}, "cutout_size"),
    ({"mixup_alpha": -0.1}, "mixup_alpha"), ({"flip": 1}, "flip"),
    ({"mask_fill": -1}, "mask_fill"),
])
def test_config_errors(cfg, match):
  with pytest.raises(ConfigError, match=match):
    A.make_augment(ml_collections.ConfigDict(cfg), CLASSIFICATION)


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
  arrays = device_data.put_on_device({"image": images, "label": np.arange(n, dtype=np.int32)})
  perm = device_data.epoch_permutation(KEY, 3, n)
  gather = jax.jit(device_data.gather_batch, static_argnums=3)
  seen = []
  for step in range(2):
    batch = gather(arrays, perm, step, bs)
    x, y = batch["image"], batch["label"]
    assert x.dtype == jnp.float32 and x.shape == (bs, 2, 2, 1)
    np.testing.assert_allclose(x[:, 0, 0, 0], np.asarray(y) / 255.0)
    seen += list(np.asarray(y))
  assert len(set(seen)) == 2 * bs
  np.testing.assert_array_equal(gather(arrays, perm, 2, bs)["label"], gather(
      arrays, perm, 0, bs)["label"])  # 2 steps per epoch: step 2 is batch 0 again
  assert not np.array_equal(perm, device_data.epoch_permutation(KEY, 4, n))

@pytest.mark.parametrize("alpha", [0.4, 1.0, 3.0])  # smaller alphas put atoms at 1.0 (float32)
def test_symmetric_beta_matches_scipy(alpha):
  lam = np.asarray(jax.jit(A.symmetric_beta, static_argnums=2)(KEY, alpha, 20_000))
  assert np.isfinite(lam).all() and lam.min() >= 0 and lam.max() <= 1
  assert stats.kstest(lam, stats.beta(alpha, alpha).cdf).pvalue > 1e-3
