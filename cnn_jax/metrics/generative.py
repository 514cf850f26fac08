"""Sample-quality metrics of generative models, computed on the host with numpy.

Offline there are no Inception weights, so the features and logits come from our own
classifier trained on the real data:

* :func:`frechet_distance`: the Fréchet distance between Gaussians fitted to two feature
  sets ``[N, D]`` (Heusel et al. 2017 with Inception features call it FID; with the
  classifier's penultimate features it is a "classifier FID"). The distance between
  features of two real splits is the floor a generator can reach.
* :func:`class_coverage`: the share of samples the classifier puts in each class
  (mode collapse shows as classes near 0).
* :func:`mean_confidence`: the mean of the classifier's top softmax probability.

For Gaussians ``N(m1, S1)`` and ``N(m2, S2)``::

  d^2 = |m1 - m2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^(1/2))

``S1 S2`` is not symmetric, so instead of a general matrix square root the trace term is
computed as ``tr((R S2 R)^(1/2))`` with ``R = S1^(1/2)``: ``R S2 R`` is similar to
``S1 S2``, symmetric and positive semi-definite, so two symmetric eigendecompositions in
float64 give it without complex round-off (negative eigenvalues from rounding clip to 0).
"""

import numpy as np

from cnn_jax.errors import ShapeError


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean ``[D]`` and covariance ``[D, D]`` (float64, ``N - 1`` normalized) of ``[N, D]``."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or len(features) < 2:
    raise ShapeError(f"features must be [N, D] with N >= 2, got {list(features.shape)}")
  return features.mean(axis=0), np.cov(features, rowvar=False).reshape(features.shape[1], -1)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
  """The symmetric square root of a symmetric positive semi-definite matrix."""
  values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
  return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def gaussian_frechet_distance(mean_a: np.ndarray, cov_a: np.ndarray, mean_b: np.ndarray,
                              cov_b: np.ndarray) -> float:
  """The squared Fréchet (2-Wasserstein) distance between ``N(mean_a, cov_a)`` and
  ``N(mean_b, cov_b)`` (see the module docstring)."""
  mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
  cov_a, cov_b = np.asarray(cov_a, np.float64), np.asarray(cov_b, np.float64)
  d = mean_a.shape[0]
  if mean_b.shape != (d,) or cov_a.shape != (d, d) or cov_b.shape != (d, d):
    raise ShapeError(f"means must be [D] and covariances [D, D] with one D, got "
                     f"{list(mean_a.shape)}, {list(cov_a.shape)}, {list(mean_b.shape)}, "
                     f"{list(cov_b.shape)}")
  root_a = _psd_sqrt(cov_a)
  cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
  trace_sqrt = np.sum(np.sqrt(np.clip(cross, 0.0, None)))
  distance = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt
  return float(max(distance, 0.0))


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """The Fréchet distance between Gaussians fitted to ``[N, D]`` and ``[M, D]`` features."""
  features_a, features_b = np.asarray(features_a), np.asarray(features_b)
  if features_a.ndim != 2 or features_b.ndim != 2 or features_a.shape[1] != features_b.shape[1]:
    raise ShapeError(f"feature sets must be [N, D] and [M, D] with one D, got "
                     f"{list(features_a.shape)} and {list(features_b.shape)}")
  return gaussian_frechet_distance(*feature_statistics(features_a),
                                   *feature_statistics(features_b))


def class_coverage(predictions: np.ndarray, num_classes: int) -> np.ndarray:
  """float64 ``[num_classes]``: the share of the ``[N]`` predicted classes in each class."""
  predictions = np.asarray(predictions).reshape(-1)
  if not len(predictions) or predictions.min() < 0 or predictions.max() >= num_classes:
    raise ShapeError(f"predictions must be a non-empty [N] array of classes 0..{num_classes - 1}")
  return np.bincount(predictions, minlength=num_classes) / len(predictions)


def mean_confidence(logits: np.ndarray) -> float:
  """The mean over ``[N, K]`` logits of the top softmax probability."""
  logits = np.asarray(logits, np.float64)
  if logits.ndim != 2 or not len(logits):
    raise ShapeError(f"logits must be [N, K] with N >= 1, got {list(logits.shape)}")
  shifted = logits - logits.max(axis=1, keepdims=True)
  return float(np.mean(1.0 / np.sum(np.exp(shifted), axis=1)))


def classifier_sample_metrics(logits: np.ndarray) -> dict:
  """Coverage and confidence of samples from the classifier's ``[N, K]`` logits.

  Returns a JSON-ready dict: ``class_coverage`` (``K`` shares), ``min_class_coverage``,
  ``max_class_coverage`` and ``mean_confidence``.
  """
  confidence = mean_confidence(logits)  # checks the shape
  logits = np.asarray(logits)
  coverage = class_coverage(np.argmax(logits, axis=-1), logits.shape[-1])
  return {"class_coverage": coverage.tolist(), "min_class_coverage": float(coverage.min()),
          "max_class_coverage": float(coverage.max()), "mean_confidence": confidence}
