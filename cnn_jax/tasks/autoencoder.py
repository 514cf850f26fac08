"""Autoencoding: reconstruction (dense or convolutional), denoising, and anomaly detection
by reconstruction error.

* ``autoencoder``: the network maps an image to itself through a small latent vector
  ("AutoEncoder is a way to get a good latent vector", as the course notes put it). Loss
  MSE or MAE (``task.loss``); metrics MSE, MAE and PSNR.
* Denoising: with ``task.noise_factor > 0`` the input is ``clip(x + factor * N(0, 1), 0, 1)``,
  drawn on the device inside the step, and the clean image is the target. Evaluation draws
  the noise of example ``i`` from ``fold_in(PRNGKey(seed), i)``, so every evaluation of a
  split sees the same noisy images; ``noisy_psnr`` is the PSNR of the noisy input itself.
* ``anomaly``: trained on the normal classes only (``task.normal_classes``); every test
  example is scored by its reconstruction error; the threshold is mean + ``threshold_std``
  x std of the error on the normal training data; reported as a binary problem (anomalous
  = positive) with ROC AUC, average precision and the metrics at that threshold and at the
  best-F1 threshold.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.data import display_name
from cnn_jax.errors import ConfigError
from cnn_jax.metrics import classification as classification_metrics
from cnn_jax.metrics import reconstruction
from cnn_jax.tasks.base import NOISE_STREAM, TASKS, SupervisedTask, masked_sum
from cnn_jax.tasks.classification import build_model

NUM_FIGURE_EXAMPLES = 8
LOSSES = ("mse", "mae")


@TASKS.register("autoencoder")
class AutoencoderTask(SupervisedTask):
  """Reconstruct the (clean) image; see the module docstring."""
  name = "autoencoder"
  inputs = {"image": "image"}
  options = {"loss": "mse", "noise_factor": 0.0}
  primary_metric = ("val_loss", "min")

  def __init__(self, config, data, **kwargs):
    super().__init__(config, data, **kwargs)
    if self.opts["loss"] not in LOSSES:
      raise ConfigError(f"task.loss must be one of {', '.join(LOSSES)}, got "
                        f"{self.opts['loss']!r}.")
    self.noise_factor = float(self.opts["noise_factor"])
    if self.noise_factor < 0:
      raise ConfigError(f"task.noise_factor must be >= 0, got {self.noise_factor}.")
    self.eval_noise_key = jax.random.PRNGKey(config.seed + 1)

  def build_model(self):
    return build_model(self.config, image_shape=tuple(self.image_shape))

  def add_noise(self, key: jax.Array, images: jax.Array) -> jax.Array:
    """``clip(images + noise_factor * N(0, 1), 0, 1)`` for images ``[B, H, W, C]``."""
    noise = jax.random.normal(key, images.shape, jnp.float32)
    return jnp.clip(images + self.noise_factor * noise, 0.0, 1.0)

  def prepare_batch(self, key, batch, train):
    """The model input is the (noisy, normalized) image; ``batch["image"]`` stays the clean
    target. Training noise comes from the step's key, evaluation noise from the example's
    index in its split."""
    if train and self.augment is not None:
      batch = super().prepare_batch(key, batch, train)  # augments the clean image
    corrupted = batch["image"]
    if self.noise_factor:
      if train:
        corrupted = self.add_noise(jax.random.fold_in(key, NOISE_STREAM), corrupted)
      else:
        keys = jax.vmap(lambda i: jax.random.fold_in(self.eval_noise_key, i))(batch["index"])
        corrupted = jax.vmap(self.add_noise)(keys, corrupted[:, None])[:, 0]
    model_input = corrupted if self.normalize is None else self.normalize(corrupted)
    return {**batch, "corrupted": corrupted, "input": model_input}

  def errors(self, recon, batch) -> dict[str, jax.Array]:
    """Per-example ``mse``, ``mae``, ``psnr`` and the training ``loss`` (``[B]`` each)."""
    errors = reconstruction.per_example(recon, batch["image"])
    return {"loss": errors[self.opts["loss"]], **errors}

  def loss(self, outputs, batch, train):
    recon, _ = outputs
    errors = self.errors(recon, batch)
    return errors["loss"], {"psnr": masked_sum(errors["psnr"])}

  def eval_step(self, state, batch):
    batch = self.prepare_batch(None, batch, train=False)
    recon, features = self.predict(state, batch)
    errors = self.errors(recon, batch)
    valid = batch["valid"]
    sums = {name: masked_sum(value, valid) for name, value in errors.items()}
    if self.noise_factor:
      noisy = reconstruction.per_example(batch["corrupted"], batch["image"])["psnr"]
      sums["noisy_psnr"] = masked_sum(noisy, valid)
    outputs = {"error": errors["loss"]}
    if "latent" in features:
      outputs["latent"] = features["latent"].reshape(features["latent"].shape[0], -1)
    return sums, outputs

  def progress_metrics(self, metrics):
    return {k: metrics[k] for k in ("loss", "psnr") if k in metrics}

  def describe_results(self, results):
    text = f"mse {results['mse']:.5f}  mae {results['mae']:.4f}  psnr {results['psnr']:.2f} dB"
    if "noisy_psnr" in results:
      text += f"  (noisy input {results['noisy_psnr']:.2f} dB)"
    return text

  def reconstruct(self, state, images: np.ndarray) -> dict[str, np.ndarray]:
    """Inputs, (noisy) model inputs and reconstructions of a few images, on the host."""
    batch = {"image": jnp.asarray(images), "index": jnp.arange(len(images), dtype=jnp.int32)}
    batch = self.prepare_batch(None, batch, train=False)
    recon, _ = self.predict(state, batch)
    rows = {"input": images}
    if self.noise_factor:
      rows["noisy input"] = np.asarray(batch["corrupted"])
    rows["reconstruction"] = np.asarray(recon)
    return rows

  def figures(self, state, data, split, results, outputs, out_dir):
    from cnn_jax.figures import generative
    arrays = data.splits[split]
    rows = self.reconstruct(state, arrays["image"][:NUM_FIGURE_EXAMPLES])
    path = lambda name: os.path.join(out_dir, f"{split}_{name}.png")  # noqa: E731
    dataset = display_name(self.config.dataset)
    figures = {"reconstructions": generative.plot_image_rows(
        list(rows.items()), path("reconstructions"),
        title=f"Reconstructions ({dataset}, {split})")}
    if "latent" in outputs and outputs["latent"].shape[-1] >= 2:
      figures["latent_pca"] = generative.plot_latent_pca(
          outputs["latent"], path("latent_pca"), labels=arrays.get("label"),
          class_names=self.class_names, title=f"Latent space, PCA ({dataset}, {split})")
    return figures


@TASKS.register("anomaly")
class AnomalyTask(AutoencoderTask):
  """Anomaly detection by reconstruction error; see the module docstring."""
  name = "anomaly"
  inputs = {"image": "image"}
  options = {**AutoencoderTask.options, "normal_classes": (0,), "threshold_std": 1.0}

  def __init__(self, config, data, **kwargs):
    super().__init__(config, data, **kwargs)
    normal = self.opts["normal_classes"]
    normal = (normal,) if isinstance(normal, (int, str)) else tuple(normal)
    self.normal = []
    for c in normal:
      if isinstance(c, str) and c in self.class_names:
        self.normal.append(self.class_names.index(c))
      elif isinstance(c, int) and 0 <= c < len(self.class_names):
        self.normal.append(c)
      else:
        raise ConfigError(f"task.normal_classes: {c!r} is not a class of this dataset "
                          f"({', '.join(self.class_names)}).")
    if not self.normal or len(self.normal) == len(self.class_names):
      raise ConfigError("task.normal_classes must name some but not all classes.")

  def select_data(self, data):
    """Training and validation keep the normal classes only; the test split keeps all."""
    if "label" not in data.splits["train"]:
      raise ConfigError("task.name='anomaly' needs a dataset with labels to know the normal "
                        "classes.")
    for split in ("train", "val"):
      data.filter(split, np.isin(data.splits[split]["label"], self.normal))
    return data

  def evaluate(self, evaluator, state, data, split):
    sums, outputs = evaluator.run(state, data.splits[split], with_outputs=True)
    results = self.summarize(sums)
    normal_errors = evaluator.run(state, data.splits["train"], with_outputs=True)[1]["error"]
    threshold = float(normal_errors.mean() + self.opts["threshold_std"] * normal_errors.std())
    anomalous = (~np.isin(data.splits[split]["label"], self.normal)).astype(np.int64)
    scores = outputs["error"]
    results["normal_classes"] = [self.class_names[i] for i in self.normal]
    results["threshold"] = threshold
    results["at_threshold"] = classification_metrics.binary_metrics_at_threshold(
        scores, anomalous, threshold)
    if anomalous.min() != anomalous.max():  # both normal and anomalous examples
      curves = classification_metrics.binary_curves(scores, anomalous)
      results["auc"], results["average_precision"] = curves["auc"], curves["average_precision"]
      results["at_best_f1"] = classification_metrics.binary_metrics_at_threshold(
          scores, anomalous, curves["best_f1"]["threshold"])
      results["curves"] = curves
    outputs["anomalous"] = anomalous
    return results, outputs

  def describe_results(self, results):
    at = results["at_threshold"]
    return (f"auc {results.get('auc', float('nan')):.4f}  average precision "
            f"{results.get('average_precision', float('nan')):.4f}  at threshold "
            f"{results['threshold']:.5f}: precision {at['precision']:.3f} recall "
            f"{at['recall']:.3f} f1 {at['f1']:.3f}")

  def figures(self, state, data, split, results, outputs, out_dir):
    from cnn_jax.figures import classification as plots
    from cnn_jax.figures import generative
    figures = super().figures(state, data, split, results, outputs, out_dir)
    path = lambda name: os.path.join(out_dir, f"{split}_{name}.png")  # noqa: E731
    dataset = display_name(self.config.dataset)
    scores, anomalous = outputs["error"], outputs["anomalous"].astype(bool)
    thresholds = {"mean + std of normal training errors": results["threshold"]}
    if "at_best_f1" in results:
      thresholds["best F1"] = results["at_best_f1"]["threshold"]
    figures["error_histogram"] = generative.plot_score_histogram(
        scores[~anomalous], scores[anomalous], path("error_histogram"), thresholds=thresholds,
        title=f"Reconstruction error ({dataset}, {split})")
    if "curves" in results:
      figures["roc"] = plots.plot_roc(results["curves"], path("roc"),
                                      title=f"ROC, anomalous = positive ({dataset}, {split})")
    return figures
