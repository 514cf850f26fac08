"""Reconstruction metrics (against numpy), the Fréchet distance (against closed forms and
scipy), coverage and confidence, and the generative figures."""

import os

import jax
import numpy as np
import pytest
import scipy.linalg
import scipy.special
from PIL import Image

from cnn_jax.errors import ShapeError
from cnn_jax.figures import generative as figures
from cnn_jax.metrics import generative, reconstruction


def test_per_example_errors_match_numpy():
  rng = np.random.default_rng(0)
  target = rng.uniform(size=(5, 6, 7, 3)).astype(np.float32)
  recon = np.clip(target + rng.normal(0, 0.1, target.shape), 0, 1).astype(np.float32)
  recon[2] = target[2]  # an exact reconstruction
  values = jax.jit(reconstruction.per_example)(recon, target)
  mse = ((recon.astype(np.float64) - target) ** 2).reshape(5, -1).mean(1)
  np.testing.assert_allclose(values["mse"], mse, rtol=1e-5)
  np.testing.assert_allclose(values["mae"], np.abs(recon - target).reshape(5, -1).mean(1),
                             rtol=1e-5)
  psnr = np.where(mse > 0, 10 * np.log10(1.0 / np.where(mse > 0, mse, 1)), reconstruction.MAX_PSNR)
  np.testing.assert_allclose(values["psnr"], psnr, rtol=1e-5)
  assert float(values["psnr"][2]) == pytest.approx(reconstruction.MAX_PSNR)
  # Noise of std 0.1 (before clipping) is about 20 dB.
  assert 19.0 < float(np.mean(np.delete(np.asarray(values["psnr"]), 2))) < 23.0
  with pytest.raises(ShapeError, match="same shape"):
    reconstruction.per_example(recon, target[:, :5])


def test_frechet_distance_of_identical_and_shifted_sets():
  features = np.random.default_rng(2).normal(size=(500, 16)) @ np.diag(np.linspace(0.1, 3, 16))
  assert generative.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)
  shift = np.linspace(-1, 1, 16)
  assert generative.frechet_distance(features, features + shift) == pytest.approx(
      np.sum(shift ** 2), rel=1e-8)
  # Fewer samples than dimensions: singular covariances, still finite and non-negative.
  assert 0.0 <= generative.frechet_distance(features[:5], features[5:12]) < np.inf


def test_gaussian_frechet_distance_closed_forms():
  rng = np.random.default_rng(3)
  mean_a, mean_b = rng.normal(size=4), rng.normal(size=4)
  var_a, var_b = rng.uniform(0.1, 4, 4), rng.uniform(0.1, 4, 4)
  # Diagonal covariances: |m1 - m2|^2 + sum (sqrt(v1) - sqrt(v2))^2.
  expected = np.sum((mean_a - mean_b) ** 2) + np.sum((np.sqrt(var_a) - np.sqrt(var_b)) ** 2)
  assert generative.gaussian_frechet_distance(mean_a, np.diag(var_a), mean_b,
                                              np.diag(var_b)) == pytest.approx(expected)
  # General covariances (S1 S2 not symmetric): the formula with scipy's matrix sqrt.
  a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
  cov_a, cov_b = a @ a.T + 0.1 * np.eye(4), b @ b.T + 0.1 * np.eye(4)
  reference = (np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b)
               - 2 * np.trace(scipy.linalg.sqrtm(cov_a @ cov_b)).real)
  assert generative.gaussian_frechet_distance(mean_a, cov_a, mean_b, cov_b) == pytest.approx(
      reference, rel=1e-8)
  # Samples of two Gaussians: the estimate converges to the closed form.
  samples_a = rng.multivariate_normal(mean_a, cov_a, 40_000)
  samples_b = rng.multivariate_normal(mean_b, cov_b, 40_000)
  assert generative.frechet_distance(samples_a, samples_b) == pytest.approx(reference, rel=0.05)
  with pytest.raises(ShapeError, match="one D"):
    generative.frechet_distance(samples_a, samples_b[:, :3])


def test_class_coverage_and_confidence():
  coverage = generative.class_coverage(np.array([0, 0, 1, 3]), num_classes=5)
  np.testing.assert_allclose(coverage, [0.5, 0.25, 0.0, 0.25, 0.0])
  logits = np.random.default_rng(4).normal(size=(50, 10)) * 3
  assert generative.mean_confidence(logits) == pytest.approx(
      scipy.special.softmax(logits, axis=1).max(axis=1).mean())
  assert generative.mean_confidence(np.array([[1000.0, 0.0]])) == pytest.approx(1.0)
  summary = generative.classifier_sample_metrics(logits)
  np.testing.assert_allclose(summary["class_coverage"],
                             np.bincount(logits.argmax(1), minlength=10) / 50)
  assert summary["min_class_coverage"] == min(summary["class_coverage"])
  with pytest.raises(ShapeError, match="classes 0..4"):
    generative.class_coverage(np.array([5]), num_classes=5)


def _png_size(path: str) -> tuple[int, int]:
  assert os.path.getsize(path) > 2000
  with Image.open(path) as image:
    return image.size


def test_figures_are_written(tmp_path):
  rng = np.random.default_rng(5)
  clean = rng.uniform(size=(12, 8, 8, 1)).astype(np.float32)
  noisy = np.clip(clean + rng.normal(0, 0.2, clean.shape), 0, 1)
  coloured = (rng.uniform(size=(12, 8, 8, 3)) * 255).astype(np.uint8)
  rows = figures.plot_image_rows([("input", clean), ("noisy", noisy), ("MNIST-M", coloured)],
                                 str(tmp_path / "rows.png"), title="rows", max_images=10)
  width, height = _png_size(rows)
  assert width > height
  samples = rng.uniform(-1, 1, (64, 8, 8, 3))
  grid = figures.plot_sample_grid(samples, str(tmp_path / "grid.png"), value_range=(-1, 1))
  width, height = _png_size(grid)
  assert abs(width - height) < 0.1 * width
  tiled = figures.tile_images(figures.to_unit_range(samples, (-1, 1)), cols=8)
  assert tiled.shape == (8 * 9 - 1, 8 * 9 - 1, 3) and 0 <= tiled.min() and tiled.max() <= 1
  gray = figures.tile_images(clean[:3], cols=2)  # 2 x 2 cells, the last one empty
  assert gray.shape == (17, 17, 3)
  np.testing.assert_array_equal(gray[:8, :8, 1], clean[0, ..., 0])
  np.testing.assert_allclose(gray[8, 0], figures.GAP_COLOR)
  np.testing.assert_allclose(gray[12, 12], figures.GAP_COLOR)
  labels = rng.integers(0, 3, 200)
  latents = rng.normal(size=(200, 6)) + labels[:, None]
  _png_size(figures.plot_latent_pca(latents, str(tmp_path / "pca.png"), labels=labels,
                                    class_names=["a", "b", "c"]))
  _png_size(figures.plot_latent_pca(latents, str(tmp_path / "pca_unlabelled.png")))
  _png_size(figures.plot_score_histogram(rng.gamma(2, 0.01, 300), rng.gamma(4, 0.02, 80),
                                         str(tmp_path / "scores.png"),
                                         thresholds={"mean + std": 0.03, "best F1": 0.04}))
  with pytest.raises(ShapeError, match="share H and W"):
    figures.plot_image_rows([("a", clean), ("b", clean[:, :4])], str(tmp_path / "bad.png"))
  with pytest.raises(ShapeError, match="class names"):
    figures.plot_latent_pca(latents, str(tmp_path / "bad.png"), labels=labels,
                            class_names=["a"])
