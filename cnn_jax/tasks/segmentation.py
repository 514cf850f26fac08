"""Semantic segmentation: one class score per pixel, trained on ``{"image", "mask"}`` batches.

The network (``config.model``, e.g. ``unet`` or ``fcn8s_vgg16``) maps images ``[B, H, W, C]``
to logits ``[B, H', W', K]`` for the ``K`` mask classes of the dataset (background
included); a valid-padding U-Net gives ``H' < H`` and its masks are centre-cropped to match.

* Loss (``task.loss``): per-pixel softmax cross-entropy, soft Dice (Milletari et al. 2016)
  or their sum ``cross_entropy + dice_weight * dice``; ``task.class_weights`` (``K``
  weights, empty for none) weighs the classes, and pixels labelled ``task.ignore_label``
  (-1 for none, e.g. 255 for VOC's object borders) count nowhere.
* Training metrics: ``loss`` and ``pixel_accuracy``.
* Evaluation sums one per-pixel confusion matrix over the split
  (:class:`~cnn_jax.metrics.segmentation.SegmentationStats`) and reports pixel accuracy,
  mean IoU (``miou``, the primary metric) and mean Dice, with per-class IoU, Dice, precision
  and recall in the final evaluation.
* Figures: image | ground truth | prediction overlays for the first test images and
  per-class IoU bars; :meth:`SegmentationTask.predict_image` draws the predicted mask over
  a user's image (``python -m cnn_jax predict``).
"""

import os

import jax.numpy as jnp
import numpy as np

from cnn_jax.data import display_name
from cnn_jax.errors import ConfigError, DataError
from cnn_jax.metrics import segmentation as metrics_lib
from cnn_jax.models.unet import center_crop
from cnn_jax.tasks.base import TASKS, SupervisedTask
from cnn_jax.tasks.classification import build_model

LOSSES = ("cross_entropy", "dice", "cross_entropy+dice")
NUM_FIGURE_EXAMPLES = 6


@TASKS.register("segmentation")
class SegmentationTask(SupervisedTask):
  """Per-pixel classification into the dataset's mask classes; see the module docstring."""
  name = "segmentation"
  inputs = {"image": "image", "mask": "mask"}
  options = {"loss": "cross_entropy", "dice_weight": 1.0, "class_weights": (),
             "ignore_label": -1}
  primary_metric = ("val_miou", "max")
  accuracy_metric = "pixel_accuracy"

  def __init__(self, config, data, **kwargs):
    super().__init__(config, data, **kwargs)
    if self.opts["loss"] not in LOSSES:
      raise ConfigError(f"task.loss must be one of {', '.join(LOSSES)}, got "
                        f"{self.opts['loss']!r}.")
    self.num_classes = len(self.class_names)
    self.ignore_label = None if int(self.opts["ignore_label"]) < 0 else int(
        self.opts["ignore_label"])
    weights = tuple(float(w) for w in self.opts["class_weights"] or ())
    if weights and (len(weights) != self.num_classes or min(weights) < 0 or not any(weights)):
      raise ConfigError(f"task.class_weights needs {self.num_classes} non-negative weights, not "
                        f"all zero (one per class: {', '.join(self.class_names)}), got "
                        f"{weights}; or () for equal weights.")
    self.class_weights = weights or None
    self._check_masks(data.splits["train"])

  def _check_masks(self, arrays: dict) -> None:
    """Fails early, in one line, when the data has no masks or a mask class out of range."""
    if "mask" not in arrays:
      raise ConfigError(f"task.name='segmentation' needs a dataset with masks (e.g. "
                        f"dataset.name='shapes' or 'mnist_scenes'); this one has "
                        f"{', '.join(sorted(arrays))}.")
    values = np.unique(arrays["mask"])
    bad = values[((values < 0) | (values >= self.num_classes)) & (values != self.ignore_label)]
    if len(bad):
      raise DataError(f"mask values {bad[:5].tolist()} are not classes 0..{self.num_classes - 1} "
                      f"of {', '.join(self.class_names)}; set task.ignore_label for pixels to "
                      "skip.")

  def chance_accuracy(self, data) -> float | None:
    """The pixel accuracy of painting every pixel the training masks' most common class."""
    masks = np.asarray(data.splits["train"]["mask"]).ravel()
    keep = masks >= 0
    if self.ignore_label is not None:
      keep &= masks != self.ignore_label
    counts = np.bincount(masks[keep], minlength=self.num_classes)
    return float(counts.max() / counts.sum()) if counts.sum() else None

  def build_model(self):
    return build_model(self.config, num_classes=self.num_classes)

  def pixel_loss(self, logits, masks):
    """Per-example loss ``[B]`` of logits ``[B, H, W, K]`` against int masks ``[B, H, W]``."""
    weights, ignore = self.class_weights, self.ignore_label
    if self.opts["loss"] == "cross_entropy":
      return metrics_lib.pixel_cross_entropy(logits, masks, weights, ignore)
    if self.opts["loss"] == "dice":
      return metrics_lib.soft_dice_loss(logits, masks, weights, ignore)
    return metrics_lib.cross_entropy_dice_loss(logits, masks, weights, ignore,
                                               dice_weight=float(self.opts["dice_weight"]))

  def loss(self, outputs, batch, train):
    logits, _ = outputs
    masks = _crop_to(batch["mask"], logits)
    labelled = jnp.ones(masks.shape, bool) if self.ignore_label is None else (
        masks != self.ignore_label)
    correct = (jnp.argmax(logits, -1) == masks) & labelled
    return self.pixel_loss(logits, masks), {
        "pixel_accuracy": (jnp.sum(correct, dtype=jnp.float32),
                           jnp.sum(labelled, dtype=jnp.float32))}

  def eval_step(self, state, batch):
    batch = self.prepare_batch(None, batch, train=False)
    logits, _ = self.predict(state, batch)
    masks = _crop_to(batch["mask"], logits)
    stats = metrics_lib.update(metrics_lib.SegmentationStats.empty(self.num_classes), logits,
                               masks, batch["valid"], self.pixel_loss(logits, masks),
                               self.ignore_label)
    return stats, {}

  def summarize(self, stats) -> dict[str, float]:
    """Loss, pixel accuracy, mean IoU and mean Dice of the summed statistics."""
    results = _results(stats)
    return {k: results[k] for k in ("loss", "pixel_accuracy", "miou", "mean_dice")}

  def progress_metrics(self, metrics):
    return {k: metrics[k] for k in ("loss", "pixel_accuracy") if k in metrics}

  def evaluate(self, evaluator, state, data, split):
    stats, outputs = evaluator.run(state, data.splits[split])
    return _results(stats), outputs

  def describe_results(self, results):
    return (f"pixel accuracy {results['pixel_accuracy']:.4f}  mIoU {results['miou']:.4f}  "
            f"mean Dice {results['mean_dice']:.4f}")

  # ---- predictions on the host: figures and the predict command ----
  def predict_masks(self, state, images: np.ndarray) -> np.ndarray:
    """Predicted classes, int ``[N, H', W']``, of images ``[N, H, W, C]`` in [0, 1]."""
    batch = self.prepare_batch(None, {"image": jnp.asarray(images, jnp.float32)}, train=False)
    logits, _ = self.predict(state, batch)
    return np.asarray(jnp.argmax(logits, axis=-1))

  def figures(self, state, data, split, results, outputs, out_dir):
    from cnn_jax.figures import segmentation as plots
    arrays = data.splits[split]
    predictions = self.predict_masks(state, arrays["image"][:NUM_FIGURE_EXAMPLES])
    images, masks = (center_crop(arrays[k][:NUM_FIGURE_EXAMPLES], *predictions.shape[1:])
                     for k in ("image", "mask"))
    path = lambda name: os.path.join(out_dir, f"{split}_{name}.png")  # noqa: E731
    dataset = display_name(self.config.dataset)
    return {
        "overlays": plots.plot_segmentation_examples(
            images, masks, path("overlays"), predictions=predictions,
            class_names=self.class_names, ignore_label=self.ignore_label,
            title=f"{self.config.model.name} on {dataset} ({split})"),
        "class_iou": plots.plot_class_iou(
            results["per_class"]["iou"], path("class_iou"), class_names=self.class_names,
            mean_iou=results["miou"], title=f"Per-class IoU ({dataset}, {split})"),
    }

  def predict_image(self, state, image: np.ndarray, out_path: str) -> str:
    """Draws the predicted mask of ``image`` ``[H, W, C]`` (in [0, 1], at the run's input
    size) over it, next to the image, with the classes found; returns ``out_path``."""
    prediction = self.predict_masks(state, image[None])[0]
    shown = center_crop(image[None], *prediction.shape)[0]
    return _plot_prediction(shown, prediction, out_path, self.class_names,
                            title=f"{self.config.model.name} ({self.config.dataset.name})")


def _crop_to(masks, logits):
  """``masks`` ``[B, H, W]`` centre-cropped to the logits' ``H' x W'`` (valid padding)."""
  return center_crop(masks, logits.shape[1], logits.shape[2])


def _results(stats: metrics_lib.SegmentationStats) -> dict:
  """:func:`metrics_lib.compute` with the mean IoU under the name ``miou``, as logged."""
  results = metrics_lib.compute(stats)
  results["miou"] = results.pop("mean_iou")
  return results


def _plot_prediction(image: np.ndarray, prediction: np.ndarray, path: str,
                     class_names: list[str], title: str) -> str:
  """One PNG: ``image`` ``[H, W, C]`` | ``prediction`` ``[H, W]`` over it, with a legend of
  the predicted classes and their share of the pixels."""
  from matplotlib.patches import Patch

  from cnn_jax.figures.classification import new_figure, save_figure
  from cnn_jax.figures.segmentation import class_colours, overlay
  k = len(class_names)
  fig = new_figure(7.0, 3.4)
  axes = fig.subplots(1, 2)
  panels = (("image", np.squeeze(image)), ("prediction", overlay(image, prediction, k)))
  for ax, (label, shown) in zip(axes, panels):
    ax.imshow(shown, cmap="gray" if image.shape[-1] == 1 else None, interpolation="nearest")
    ax.set_title(label)
    ax.set_xticks([])
    ax.set_yticks([])
  share = np.bincount(prediction.ravel(), minlength=k) / prediction.size
  colours = class_colours(k)
  handles = [Patch(color=colours[c], label=f"{class_names[c]} {100 * share[c]:.1f}%")
             for c in range(1, k) if share[c] > 0]
  if handles:
    fig.legend(handles=handles, loc="outside right center", fontsize="small")
  fig.suptitle(title)
  return save_figure(fig, path)
