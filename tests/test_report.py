"""The run report, built from real metrics, a diagnosis and rendered figures."""

import html.parser
import os

import numpy as np

from cnn_jax.metrics import classification as M
from cnn_jax.figures import classification as plots
from cnn_jax.figures import curves
from cnn_jax.evaluate.diagnose import diagnose
from cnn_jax.evaluate.report import write_report

CLASSES = ["cat", "dog", "bird"]


def history():
  return [{"epoch": e, "step": 10 * e, "train_loss": 1.0 / e, "val_loss": 1.1 / e,
           "train_accuracy": 0.7 + 0.05 * e, "val_accuracy": 0.68 + 0.05 * e,
           "learning_rate": 1e-3, "epoch_time_s": 1.5} for e in range(1, 6)]


def test_figures_and_report(tmp_path):
  rng = np.random.default_rng(0)
  labels = rng.integers(0, 3, 60)
  logits = rng.normal(size=(60, 3)) + 2 * np.eye(3)[labels]
  probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  stats = M.update(M.ClassificationStats.empty(3), logits, labels, np.ones(60),
                   rng.random(60))
  results = M.compute(stats)
  workdir = str(tmp_path / "run")
  fig_dir = os.path.join(workdir, "figures")
  preds = logits.argmax(-1)
  ovr = M.one_vs_rest_curves(probs, labels, CLASSES)
  figures = {
      "learning_curves": curves.plot_learning_curves(history(), f"{fig_dir}/curves.png"),
      "confusion_matrix": plots.plot_confusion_matrix(
          results["confusion_matrix"], f"{fig_dir}/cm.png", class_names=CLASSES),
      "roc": plots.plot_roc(ovr, f"{fig_dir}/roc.png"),
      "precision_recall": plots.plot_pr(M.binary_curves(probs[:, 0], labels == 0),
                                        f"{fig_dir}/pr.png"),
      "per_class": plots.plot_per_class(results["per_class"], f"{fig_dir}/per_class.png",
                                        class_names=CLASSES),
      "misclassified": plots.plot_misclassified(
          rng.random((60, 8, 8, 1)), labels, preds, f"{fig_dir}/wrong.png",
          class_names=CLASSES),
  }
  for path in figures.values():
    with open(path, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n"

  diagnosis = diagnose(history(), chance=1 / 3)
  md_path, html_path = write_report(
      workdir, config={"model": {"name": "lenet5"}, "train": {"epochs": 5, "lr": 3e-4}},
      dataset_info={"name": "toy", "class_names": CLASSES, "splits": {"train": 480, "test": 60}},
      model_info={"name": "lenet5", "num_params": 61706}, history=history(),
      eval_results={"test": results}, diagnosis=diagnosis, figures=figures)
  assert (md_path, html_path) == (f"{workdir}/report.md", f"{workdir}/report.html")
  md, page = open(md_path).read(), open(html_path).read()
  accuracy = f"{results['accuracy']:.4f}"
  for text in (md, page):
    for needle in (accuracy, f"{results['f1_macro']:.4f}", "61,706", "lenet5", "toy",
                   diagnosis.verdict, "train.epochs", "0.0003", "splits.train", "480",
                   "dog", f"{results['per_class']['recall'][1]:.4f}", "figures/cm.png"):
      assert needle in text, needle
  assert "![Learning curves](figures/curves.png)" in md
  assert '<img src="figures/roc.png"' in page and "<style>" in page

  class Checker(html.parser.HTMLParser):
    """Checks that every opened non-void tag is closed in order."""
    def __init__(self):
      super().__init__()
      self.stack = []

    def handle_starttag(self, tag, attrs):
      if tag not in ("meta", "img"):
        self.stack.append(tag)

    def handle_endtag(self, tag):
      assert self.stack.pop() == tag

  checker = Checker()
  checker.feed(page)
  assert checker.stack == []
