"""A one-stage grid detector in the style of YOLO v1 (Redmon et al. 2016), with its loss.

The image is cut into an ``S x S`` grid; the cell holding the centre of an object predicts
it. Each cell outputs ``B`` boxes, each ``(x, y, w, h, objectness)``, and one set of ``K``
class scores, so the model returns ``raw [batch, S, S, 5 B + K]`` float32 (box ``b`` in
channels ``5 b .. 5 b + 4``, class logits last). Through sigmoids, ``x, y`` are the centre's
offset within its cell and ``w, h`` are the *square roots* of the box size as fractions of
the image, as the paper predicts them; objectness is a sigmoid and the class scores a
softmax. Boxes elsewhere are ``(y_min, x_min, y_max, x_max)`` image fractions, the layout of
the ``"boxes"`` input (:mod:`cnn_jax.data.sources`).

Unlike the paper's two fully connected layers, the head is convolutional (as in YOLO v2):
the backbone's last feature map, average-pooled to ``S x S`` where it is larger, then a 3x3
conv-BN-leaky-ReLU and a 1x1 convolution. Variants:

* ``yolo_simple``: four 3x3 conv-BN-leaky-ReLU blocks (``width`` .. ``8 width`` channels)
  with 2x2 max pools after the first three; 64x64 input -> 8x8 features = the 8x8 grid.
* ``yolo_cifar_resnet20``: the three stages of :class:`~cnn_jax.models.cifar_resnet.
  CifarResNet` (ResNet-20, stride 4) as the backbone. Its classifier ``backbone/fc`` is kept
  but unused, so ``cifar_resnet20`` weights load into ``backbone`` unchanged.

The functions below are pure and jittable: :func:`encode_targets` (per-cell targets),
:func:`yolo_loss` (per-example loss), :func:`decode` (every box with its score and class)
and :func:`detect` (decode + NMS to fixed-size padded predictions).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from cnn_jax.errors import ConfigError
from cnn_jax.metrics.detection import box_area, matched_box_iou, select_detections
from cnn_jax.models import MODELS
from cnn_jax.models.cifar_resnet import CifarResNet
from cnn_jax.models.layers import ConvBN, adaptive_avg_pool, classifier_output, global_avg_pool

BACKBONES = ("simple", "cifar_resnet20")
VALUES_PER_BOX = 5  # x, y, sqrt w, sqrt h, objectness


class SimpleBackbone(nn.Module):
  """``[B, H, W, C] -> [B, H/8, W/8, 8 width]``; features ``stage1`` .. ``stage4``."""
  width: int = 16
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False) -> tuple[jnp.ndarray, dict]:
    features = {}
    for stage in range(4):
      x = ConvBN(self.width * 2**stage, act="leaky_relu", dtype=self.dtype,
                 name=f"block{stage + 1}")(x, train)
      if stage < 3:
        x = nn.max_pool(x, (2, 2), (2, 2), padding="SAME")
      features[f"stage{stage + 1}"] = x
    return x, features


class YoloDetector(nn.Module):
  """``[B, H, W, C] -> (raw [B, S, S, 5 num_boxes + num_classes] float32, features)``.

  Features: the backbone's ``stage1`` .. , ``head`` (``[B, S, S, head_width]``) and
  ``pre_logits`` (``[B, head_width]``, its spatial mean).
  """
  num_classes: int = 3
  grid_size: int = 8
  num_boxes: int = 2
  backbone: str = "simple"  # one of BACKBONES
  width: int = 16  # channels of the first block of the simple backbone
  head_width: int = 128
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool = False):
    if self.backbone not in BACKBONES:
      raise ConfigError(f"Detector backbone must be one of {BACKBONES}, got {self.backbone!r}.")
    if min(self.num_classes, self.grid_size, self.num_boxes) < 1:
      raise ConfigError(f"Detector num_classes, grid_size and num_boxes must be >= 1, got "
                        f"{self.num_classes}, {self.grid_size} and {self.num_boxes}.")
    x = x.astype(self.dtype)
    if self.backbone == "simple":
      x, features = SimpleBackbone(self.width, dtype=self.dtype, name="backbone")(x, train)
    else:
      _, features = CifarResNet(depth=20, dtype=self.dtype, name="backbone")(x, train)
      features = {k: v for k, v in features.items() if k.startswith("stage")}
      x = features["stage3"]
    if x.shape[1:3] != (self.grid_size, self.grid_size):
      x = adaptive_avg_pool(x, (self.grid_size, self.grid_size))
    x = ConvBN(self.head_width, act="leaky_relu", dtype=self.dtype, name="head")(x, train)
    features["head"] = x
    features["pre_logits"] = global_avg_pool(x)
    raw = nn.Conv(VALUES_PER_BOX * self.num_boxes + self.num_classes, (1, 1), dtype=self.dtype,
                  name="predictions")(x)
    return classifier_output(raw), features


@MODELS.register("yolo_simple", input_shape=(64, 64, 3), output="grid")
def yolo_simple(**kw) -> YoloDetector:
  return YoloDetector(**{"backbone": "simple", **kw})


@MODELS.register("yolo_cifar_resnet20", input_shape=(64, 64, 3), output="grid")
def yolo_cifar_resnet20(**kw) -> YoloDetector:
  return YoloDetector(**{"backbone": "cifar_resnet20", **kw})


def encode_targets(boxes: jax.Array, classes: jax.Array, valid: jax.Array, grid_size: int,
                   num_classes: int) -> dict[str, jax.Array]:
  """Assigns every real box to the grid cell holding its centre; jittable.

  A cell holds at most one object: where several centres fall in one cell, the largest box
  wins (the first of equals).

  Args:
    boxes: ``[B, M, 4]`` ``(y_min, x_min, y_max, x_max)`` image fractions.
    classes: ``[B, M]`` int classes.
    valid: ``[B, M]`` bool, the real boxes.
    grid_size: ``S``.
    num_classes: ``K``.

  Returns:
    ``"object"`` ``[B, S, S]`` float32 (1 where a cell holds an object), ``"boxes"``
    ``[B, S, S, 4]`` that object's box, ``"coords"`` ``[B, S, S, 4]`` its regression targets
    ``(x, y, sqrt w, sqrt h)`` and ``"class_probs"`` ``[B, S, S, K]`` its one-hot class; all
    zero in empty cells.
  """
  batch, s = boxes.shape[0], grid_size
  centre = (boxes[..., :2] + boxes[..., 2:]) / 2  # (y, x)
  cell_yx = jnp.clip(jnp.floor(centre * s), 0, s - 1).astype(jnp.int32)
  in_cell = jax.nn.one_hot(cell_yx[..., 0] * s + cell_yx[..., 1], s * s, dtype=bool)
  in_cell &= valid[..., None]  # [B, M, S*S]
  priority = jnp.where(in_cell, box_area(boxes)[..., None], -1.0)
  owner = jnp.argmax(priority, axis=1)  # [B, S*S], the index of the cell's box
  has_object = jnp.any(in_cell, axis=1)

  def cell_values(values):  # [B, M, ...] -> [B, S, S, ...], zero in empty cells
    picked = jnp.take_along_axis(values, owner.reshape(owner.shape + (1,) * (values.ndim - 2)),
                                 axis=1)
    mask = has_object.reshape(has_object.shape + (1,) * (values.ndim - 2))
    return jnp.where(mask, picked, 0).reshape((batch, s, s) + values.shape[2:])

  size = boxes[..., 2:] - boxes[..., :2]  # (h, w)
  offset = centre * s - cell_yx  # (y, x) within the cell, in [0, 1)
  coords = jnp.stack([offset[..., 1], offset[..., 0], jnp.sqrt(jnp.maximum(size[..., 1], 0)),
                      jnp.sqrt(jnp.maximum(size[..., 0], 0))], -1)
  return {"object": has_object.reshape(batch, s, s).astype(jnp.float32),
          "boxes": cell_values(boxes.astype(jnp.float32)),
          "coords": cell_values(coords.astype(jnp.float32)),
          "class_probs": cell_values(jax.nn.one_hot(classes, num_classes))}


def _predictions(raw: jax.Array, num_boxes: int) -> tuple[jax.Array, jax.Array, jax.Array]:
  """``raw [B, S, S, 5 nb + K]`` -> ``coords [B, S, S, nb, 4]`` (sigmoid ``x, y, sqrt w,
  sqrt h``), ``objectness [B, S, S, nb]`` and ``class_probs [B, S, S, K]`` (softmax)."""
  if raw.ndim != 4 or raw.shape[1] != raw.shape[2] \
      or raw.shape[-1] <= VALUES_PER_BOX * num_boxes:
    raise ConfigError(f"expected raw detector outputs [B, S, S, 5 * {num_boxes} + K] with "
                      f"K >= 1, got {list(raw.shape)}; is num_boxes the model's?")
  per_box = jax.nn.sigmoid(raw[..., :VALUES_PER_BOX * num_boxes].reshape(
      raw.shape[:3] + (num_boxes, VALUES_PER_BOX)))
  return (per_box[..., :4], per_box[..., 4],
          jax.nn.softmax(raw[..., VALUES_PER_BOX * num_boxes:], axis=-1))


def _coords_to_boxes(coords: jax.Array) -> jax.Array:
  """``[B, S, S, nb, 4]`` ``(x, y, sqrt w, sqrt h)`` -> ``(y_min, x_min, y_max, x_max)``."""
  s = coords.shape[1]
  rows = jnp.arange(s, dtype=coords.dtype)[None, :, None, None]
  cols = jnp.arange(s, dtype=coords.dtype)[None, None, :, None]
  centre_x, centre_y = (cols + coords[..., 0]) / s, (rows + coords[..., 1]) / s
  half_w, half_h = coords[..., 2]**2 / 2, coords[..., 3]**2 / 2
  return jnp.stack([centre_y - half_h, centre_x - half_w, centre_y + half_h,
                    centre_x + half_w], -1)


def yolo_loss(raw: jax.Array, boxes: jax.Array, classes: jax.Array, valid: jax.Array, *,
              num_boxes: int = 2, lambda_coord: float = 5.0,
              lambda_noobj: float = 0.5) -> jax.Array:
  """The sum-squared YOLO v1 loss of each example, ``[B]``; jittable.

  In a cell holding an object, the predictor ("responsible" box) whose box has the highest
  IoU with the object's is trained on ``(x, y, sqrt w, sqrt h)`` (weight ``lambda_coord``)
  and on objectness with that IoU as its target; the cell's class probabilities are trained
  towards the one-hot class. Every other predictor's objectness is pushed to 0 with weight
  ``lambda_noobj``.

  Args:
    raw: ``[B, S, S, 5 num_boxes + K]`` model outputs.
    boxes, classes, valid: the ground truth, ``[B, M, 4]``, ``[B, M]``, ``[B, M]``.
    num_boxes: boxes per cell of the model.
    lambda_coord, lambda_noobj: the paper's weights.
  """
  coords, objectness, class_probs = _predictions(raw, num_boxes)
  target = encode_targets(boxes, classes, valid, raw.shape[1], class_probs.shape[-1])
  ious = matched_box_iou(_coords_to_boxes(coords), target["boxes"][..., None, :])
  responsible = jax.nn.one_hot(jnp.argmax(ious, -1), num_boxes) * target["object"][..., None]
  coord_error = jnp.sum((coords - target["coords"][..., None, :])**2, -1)
  per_cell = (lambda_coord * jnp.sum(responsible * coord_error, -1) +
              jnp.sum(responsible * (objectness - jax.lax.stop_gradient(ious))**2, -1) +
              lambda_noobj * jnp.sum((1 - responsible) * objectness**2, -1) +
              target["object"] * jnp.sum((class_probs - target["class_probs"])**2, -1))
  return jnp.sum(per_cell, axis=(1, 2))


def decode(raw: jax.Array, *, num_boxes: int = 2) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Every predicted box with its class-specific score; jittable.

  Returns:
    ``boxes [B, S*S*nb, 4]`` (clipped to the image), ``scores [B, S*S*nb]`` (objectness
    times the best class probability, the paper's class-specific confidence) and
    ``classes [B, S*S*nb]`` int32 (that class).
  """
  coords, objectness, class_probs = _predictions(raw, num_boxes)
  batch = raw.shape[0]
  boxes = jnp.clip(_coords_to_boxes(coords), 0, 1).reshape(batch, -1, 4)
  scores = objectness * jnp.max(class_probs, -1)[..., None]
  classes = jnp.broadcast_to(jnp.argmax(class_probs, -1)[..., None], scores.shape)
  return boxes, scores.reshape(batch, -1), classes.reshape(batch, -1).astype(jnp.int32)


def detect(raw: jax.Array, *, num_boxes: int = 2, max_detections: int = 100,
           iou_threshold: float = 0.5, score_threshold: float = 0.01,
           class_agnostic: bool = False) -> dict[str, jax.Array]:
  """:func:`decode` then NMS: padded predictions ``{"boxes" [B, D, 4], "scores" [B, D],
  "classes" [B, D], "valid" [B, D]}`` with ``D = max_detections``; jittable."""
  return select_detections(*decode(raw, num_boxes=num_boxes), max_outputs=max_detections,
                           iou_threshold=iou_threshold, score_threshold=score_threshold,
                           class_agnostic=class_agnostic)
