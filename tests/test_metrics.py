"""Metrics cross-checked against scikit-learn."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn import metrics as skm

from cnn_jax.errors import DataError
from cnn_jax.metrics import classification as M

K = 5
update = jax.jit(M.update)


def accumulate(logits, labels, mask, loss, batch=16, top_k=(2, 3)):
  """Runs the jitted update over padded batches, as an eval loop does."""
  stats = M.ClassificationStats.empty(K, top_k=top_k)
  for i in range(0, len(labels), batch):
    sl = slice(i, i + batch)
    stats = update(stats, logits[sl], labels[sl], mask[sl], loss[sl])
  return M.compute(stats)


def sklearn_reference(logits, labels, mask, loss):
  y, p = labels[mask], logits[mask].argmax(-1)
  present = np.union1d(y, p)
  ref = {"accuracy": skm.accuracy_score(y, p), "loss": loss[mask].mean()}
  for avg in ("macro", "micro", "weighted"):
    prec, rec, f1, _ = skm.precision_recall_fscore_support(y, p, average=avg, zero_division=0)
    ref.update({f"precision_{avg}": prec, f"recall_{avg}": rec, f"f1_{avg}": f1})
  mcm = skm.multilabel_confusion_matrix(y, p, labels=np.arange(K))  # [K, 2, 2]
  tn, fp = mcm[:, 0, 0], mcm[:, 0, 1]
  spec = np.where(tn + fp > 0, tn / np.maximum(tn + fp, 1), 0.0)
  ref["specificity_macro"] = spec[present].mean()
  ref["specificity_micro"] = tn[present].sum() / (tn[present].sum() + fp[present].sum())
  support = np.bincount(y, minlength=K)
  ref["specificity_weighted"] = (spec * support).sum() / support.sum()
  prec, rec, f1, sup = skm.precision_recall_fscore_support(
      y, p, labels=np.arange(K), average=None, zero_division=0)
  ref["per_class"] = {"precision": prec, "recall": rec, "f1": f1, "support": sup,
                      "specificity": spec}
  ref["confusion_matrix"] = skm.confusion_matrix(y, p, labels=np.arange(K))
  for k in (2, 3):
    ref[f"top{k}_accuracy"] = skm.top_k_accuracy_score(y, logits[mask], k=k, labels=np.arange(K))
  return ref


def assert_matches(out, ref):
  for key, value in ref.items():
    if key == "per_class":
      for name, values in value.items():
        np.testing.assert_allclose(out["per_class"][name], values, atol=1e-6, err_msg=name)
    elif key == "confusion_matrix":
      np.testing.assert_array_equal(out[key], value)
    else:
      assert out[key] == pytest.approx(value, abs=1e-6), key


def random_case(seed, n=70, label_pool=K, pred_bias=None):
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, label_pool, n)
  logits = rng.normal(size=(n, K)).astype(np.float32)
  logits[np.arange(n), labels] += 1.0  # better than chance, not perfect
  if pred_bias is not None:
    logits += pred_bias
  mask = rng.random(n) > 0.2
  loss = rng.random(n).astype(np.float32)
  return logits, labels, mask, loss


def test_multiclass_matches_sklearn_with_masks_and_batches():
  case = random_case(0)
  out = accumulate(*case)
  assert out["count"] == case[2].sum()
  assert_matches(out, sklearn_reference(*case))


def test_class_never_predicted():
  bias = np.zeros(K, np.float32)
  bias[3] = -100.0
  case = random_case(1, pred_bias=bias)
  out = accumulate(*case)
  assert out["per_class"]["precision"][3] == 0.0
  assert_matches(out, sklearn_reference(*case))


def test_single_class_in_labels():
  case = random_case(2, label_pool=1)
  out = accumulate(*case)
  assert out["per_class"]["support"] == [case[2].sum(), 0, 0, 0, 0]
  assert_matches(out, sklearn_reference(*case))


def test_all_correct():
  logits, labels, mask, loss = random_case(3)
  logits = np.eye(K, dtype=np.float32)[labels] * 10
  out = accumulate(logits, labels, mask, loss)
  assert out["accuracy"] == 1.0 and out["f1_macro"] == 1.0 and out["specificity_macro"] == 1.0
  assert_matches(out, sklearn_reference(logits, labels, mask, loss))


def test_all_masked_batch_changes_nothing():
  logits, labels, mask, loss = random_case(4, n=32)
  stats = M.ClassificationStats.empty(K)
  stats = update(stats, logits[:16], labels[:16], mask[:16], loss[:16])
  masked = update(stats, logits[16:], labels[16:], np.zeros(16, bool), loss[16:])
  assert M.compute(masked) == M.compute(stats)
  empty = M.compute(M.ClassificationStats.empty(K))
  assert empty["count"] == 0 and empty["accuracy"] == 0.0 and empty["f1_macro"] == 0.0


def test_merge_equals_one_pass_and_topk_ties():
  logits, labels, mask, loss = random_case(5, n=32)
  logits = np.round(logits)  # many ties: top-1 must still equal argmax accuracy
  a = M.ClassificationStats.empty(K, top_k=(1, 2, 9))
  assert a.top_k == (2,)
  a1 = update(a, logits[:16], labels[:16], mask[:16], loss[:16])
  a2 = update(a, logits[16:], labels[16:], mask[16:], loss[16:])
  full = M.compute(update(a, logits, labels, mask, loss))
  assert M.compute(M.merge(a1, a2)) == full
  ref = skm.top_k_accuracy_score(labels[mask], logits[mask], k=2, labels=np.arange(K))
  # sklearn breaks ties towards the higher index, we towards the lower one: bound it.
  assert abs(full["top2_accuracy"] - ref) < 0.2
  assert full["accuracy"] == pytest.approx(np.mean(logits[mask].argmax(-1) == labels[mask]))


def test_binary_single_logit_and_bad_labels():
  rng = np.random.default_rng(6)
  logit = rng.normal(size=20).astype(np.float32)
  labels = rng.integers(0, 2, 20)
  stats = M.update(M.ClassificationStats.empty(2), jnp.asarray(logit)[:, None], labels,
                   np.ones(20, bool), np.zeros(20, np.float32))
  out = M.compute(stats)
  np.testing.assert_array_equal(out["confusion_matrix"],
                                skm.confusion_matrix(labels, (logit >= 0).astype(int)))
  bad = M.update(M.ClassificationStats.empty(3), np.zeros((2, 3)), np.array([0, 7]),
                 np.ones(2, bool), np.zeros(2))
  with pytest.raises(DataError, match="outside"):
    M.compute(bad)


@pytest.mark.parametrize("ties", [False, True])
def test_binary_curves_match_sklearn(ties):
  rng = np.random.default_rng(7)
  labels = rng.integers(0, 2, 200)
  scores = rng.random(200) + 0.4 * labels
  if ties:
    scores = np.round(scores, 1)
  out = M.binary_curves(scores, labels)
  fpr, tpr, thr = skm.roc_curve(labels, scores, drop_intermediate=False)
  np.testing.assert_allclose(out["roc"]["fpr"], fpr, atol=1e-12)
  np.testing.assert_allclose(out["roc"]["tpr"], tpr, atol=1e-12)
  np.testing.assert_array_equal(out["roc"]["thresholds"], thr)
  assert out["auc"] == pytest.approx(skm.roc_auc_score(labels, scores), abs=1e-6)
  prec, rec, thr = skm.precision_recall_curve(labels, scores)
  np.testing.assert_allclose(out["pr"]["precision"], prec, atol=1e-12)
  np.testing.assert_allclose(out["pr"]["recall"], rec, atol=1e-12)
  np.testing.assert_array_equal(out["pr"]["thresholds"], thr)
  assert out["average_precision"] == pytest.approx(
      skm.average_precision_score(labels, scores), abs=1e-6)
  t = out["best_f1"]["threshold"]
  assert out["best_f1"]["f1"] == pytest.approx(skm.f1_score(labels, scores >= t), abs=1e-6)
  # Every sweep row equals the fixed-threshold metrics at that threshold.
  i = len(out["sweep"]["threshold"]) // 2
  at = M.binary_metrics_at_threshold(scores, labels, out["sweep"]["threshold"][i])
  for key in ("accuracy", "precision", "recall", "specificity", "f1"):
    assert at[key] == pytest.approx(out["sweep"][key][i], abs=1e-12)


def test_binary_metrics_at_threshold_matches_sklearn():
  rng = np.random.default_rng(8)
  labels = rng.integers(0, 2, 100)
  scores = rng.random(100)
  out = M.binary_metrics_at_threshold(scores, labels, 0.3)
  pred = (scores >= 0.3).astype(int)
  assert out["accuracy"] == pytest.approx(skm.accuracy_score(labels, pred), abs=1e-6)
  assert out["precision"] == pytest.approx(skm.precision_score(labels, pred), abs=1e-6)
  assert out["recall"] == pytest.approx(skm.recall_score(labels, pred), abs=1e-6)
  assert out["f1"] == pytest.approx(skm.f1_score(labels, pred), abs=1e-6)
  np.testing.assert_array_equal(out["confusion_matrix"], skm.confusion_matrix(labels, pred))
  tn, fp = out["confusion_matrix"][0]
  assert out["specificity"] == pytest.approx(tn / (tn + fp))
  none = M.binary_metrics_at_threshold(scores, labels, 2.0)  # nothing predicted positive
  assert none["precision"] == 0.0 and none["recall"] == 0.0 and none["f1"] == 0.0
  with pytest.raises(DataError):
    M.binary_metrics_at_threshold(scores, labels + 1)


def test_one_class_curves_are_nan():
  out = M.binary_curves(np.array([0.1, 0.9, 0.9]), np.array([1, 1, 1]))
  assert np.isnan(out["auc"]) and np.isnan(out["average_precision"])


def test_one_vs_rest_curves():
  rng = np.random.default_rng(9)
  logits, labels, mask, _ = random_case(int(rng.integers(1 << 30)), n=120)
  keep = np.asarray(mask) > 0
  scores = np.asarray(jax.nn.softmax(logits), np.float64)[keep]
  labels = np.asarray(labels)[keep]
  assert scores.shape == (len(labels), K)
  out = M.one_vs_rest_curves(scores, labels, class_names=list("abcde"))
  assert list(out["per_class"]) == list("abcde") and out["skipped"] == []
  assert out["macro_auc"] == pytest.approx(
      skm.roc_auc_score(labels, scores, multi_class="ovr"), abs=1e-6)
  ap = [skm.average_precision_score(labels == c, scores[:, c]) for c in range(K)]
  assert out["macro_average_precision"] == pytest.approx(np.mean(ap), abs=1e-6)
  partial = M.one_vs_rest_curves(scores[labels < 3], labels[labels < 3])
  assert partial["skipped"] == ["3", "4"]


def test_to_jsonable():
  out = M.to_jsonable({"a": np.arange(2), "b": np.float32(0.5), "c": (float("nan"), 1)})
  assert out == {"a": [0, 1], "b": 0.5, "c": [None, 1]}
