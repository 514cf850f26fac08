"""Diagnosis verdicts on synthetic histories."""

import math

from cnn_jax.evaluate.diagnose import diagnose


def history(train_loss, val_loss, train_acc=None, val_acc=None):
  rows = []
  for i, (tl, vl) in enumerate(zip(train_loss, val_loss)):
    row = {"epoch": i + 1, "step": 14 * (i + 1), "train_loss": tl, "val_loss": vl,
           "learning_rate": 1e-3, "epoch_time_s": 1.0}
    if train_acc is not None:
      row.update(train_accuracy=train_acc[i], val_accuracy=val_acc[i])
    rows.append(row)
  return rows


def test_overfitting_from_accuracy_gap_and_rising_val_loss():
  d = diagnose(history(
      train_loss=[1.5, 0.8, 0.4, 0.2, 0.1, 0.05, 0.02, 0.01],
      val_loss=[1.5, 1.0, 0.8, 0.85, 0.95, 1.1, 1.3, 1.5],
      train_acc=[0.5, 0.75, 0.88, 0.94, 0.97, 0.99, 1.0, 1.0],
      val_acc=[0.5, 0.66, 0.72, 0.72, 0.71, 0.71, 0.70, 0.70]), chance=0.1)
  assert d.verdict == "overfitting"
  assert d.best_epoch == 3
  assert "best epoch was 3" in d.advice[-1]
  assert "0.293" in d.explanation  # the accuracy gap over the last 3 epochs
  assert any("dropout" in a for a in d.advice)


def test_overfitting_from_val_loss_alone():
  d = diagnose(history(
      train_loss=[1.0, 0.6, 0.4, 0.3, 0.2, 0.15],
      val_loss=[1.0, 0.7, 0.5, 0.6, 0.65, 0.7]))
  assert d.verdict == "overfitting"
  assert d.best_epoch == 3
  assert "+30%" in d.explanation


def test_underfitting():
  d = diagnose(history(
      train_loss=[2.2, 2.0, 1.9, 1.85, 1.8],
      val_loss=[2.2, 2.0, 1.9, 1.86, 1.82],
      train_acc=[0.2, 0.28, 0.32, 0.34, 0.35],
      val_acc=[0.2, 0.27, 0.31, 0.33, 0.34]), chance=0.1)
  assert d.verdict == "underfitting"
  assert "0.337" in d.explanation and "chance is 0.100" in d.explanation
  assert any("capacity" in a for a in d.advice)
  assert any("still falling" in a for a in d.advice)


def test_not_learning_at_all():
  d = diagnose(history([2.3] * 4, [2.3] * 4, [0.1, 0.11, 0.1, 0.09], [0.1] * 4),
               chance=0.1)
  assert d.verdict == "underfitting"
  assert "not learning at all" in d.explanation


def test_good_fit():
  d = diagnose(history(
      train_loss=[0.8, 0.3, 0.15, 0.1, 0.08],
      val_loss=[0.5, 0.25, 0.14, 0.11, 0.10],
      train_acc=[0.8, 0.92, 0.96, 0.97, 0.975],
      val_acc=[0.85, 0.93, 0.955, 0.965, 0.97]), chance=0.1)
  assert d.verdict == "good fit"
  assert d.best_epoch == 5
  assert "training longer" in d.advice[0]
  assert d.evidence["final_val_accuracy"] == 0.97


def test_unstable_training_is_not_called_overfitting():
  d = diagnose(history(
      train_loss=[0.5, 0.3, 0.2, 0.4, 0.5, 0.6],
      val_loss=[0.5, 0.3, 0.2, 0.4, 0.5, 0.6],
      train_acc=[0.9] * 6, val_acc=[0.9] * 6))
  assert d.verdict == "good fit"
  assert "unstable" in d.explanation


def test_not_enough_data():
  assert diagnose([]).verdict == "not enough data"
  assert diagnose(history([1.0, 0.5], [1.0, 0.6])).verdict == "not enough data"
  no_val = [{"epoch": e, "train_loss": 1.0 / e} for e in range(1, 6)]
  assert diagnose(no_val).verdict == "not enough data"
  diverged = history([1.0, 0.5, math.nan, math.nan], [1.0, 0.6, math.nan, math.nan])
  d = diagnose(diverged)
  assert d.verdict == "not enough data" and "epoch 3" in d.explanation
  assert any("learning rate" in a for a in d.advice)


def test_resumed_epochs_keep_the_last_row():
  rows = history([1.0, 0.6, 0.4, 0.3], [1.0, 0.7, 0.5, 0.45], [0.6, 0.8, 0.9, 0.95],
                 [0.6, 0.8, 0.88, 0.93])
  # A resumed run rewrote epoch 2; only the later row counts.
  stale = dict(rows[1], val_loss=9.0)
  d = diagnose(rows[:2] + [stale] + rows[1:])
  assert d.verdict == "good fit" and d.evidence["epochs"] == 4
  assert str(d).startswith("Diagnosis: good fit")


def test_advice_points_at_the_kept_best_checkpoint_by_the_primary_metric():
  rows = history(train_loss=[1.5, 0.8, 0.4, 0.2, 0.1, 0.05],
                 val_loss=[1.5, 1.0, 0.8, 0.85, 0.95, 1.1],
                 train_acc=[0.5, 0.75, 0.88, 0.94, 0.97, 0.99],
                 val_acc=[0.5, 0.66, 0.72, 0.75, 0.71, 0.71])
  for i, r in enumerate(rows):
    r["step"] = 10 * (i + 1)
  d = diagnose(rows, chance=0.1, primary=("val_accuracy", "max"),
               checkpoints={"best": 40, "steps_per_epoch": 10})
  assert d.best_epoch == 4  # by val_accuracy, not by the lowest validation loss (epoch 3)
  assert "step 40 (epoch 4, val_accuracy 0.7500)" in d.advice[-1]
  assert "--checkpoint best" in d.advice[-1]


def test_pixel_accuracy_of_a_segmentation_run_is_judged():
  rows = history(train_loss=[1.0, 0.5, 0.3, 0.2, 0.1], val_loss=[1.0, 0.6, 0.5, 0.5, 0.52])
  for row, (train, val) in zip(rows, [(0.7, 0.7), (0.85, 0.78), (0.95, 0.8), (0.98, 0.8),
                                      (0.99, 0.8)]):
    row.update(train_pixel_accuracy=train, val_pixel_accuracy=val)
  d = diagnose(rows, primary=("val_miou", "max"), accuracy="pixel_accuracy")
  assert d.verdict == "overfitting"
  assert "train pixel accuracy averages 0.973" in d.explanation
  assert diagnose(rows).verdict == "good fit"  # by "accuracy", which this run never logged
  assert "accuracy was not logged" in diagnose(rows).explanation


def test_a_task_without_accuracy_is_judged_by_its_losses():
  d = diagnose(history([0.8, 0.3, 0.15, 0.1], [0.5, 0.25, 0.14, 0.11]), accuracy=None)
  assert d.verdict == "good fit"
  assert "not logged" not in d.explanation


def test_painting_everything_background_is_not_learning_at_all():
  # mnist_scenes: 94.4% of the pixels are background; a U-Net that paints all of them
  # background has a high pixel accuracy and has learned nothing
  rows = history(train_loss=[2.4, 1.1, 1.0, 0.9, 0.8], val_loss=[1.3, 1.0, 0.9, 0.85, 0.8])
  for row in rows:
    row.update(train_pixel_accuracy=0.9438, val_pixel_accuracy=0.9379)
  d = diagnose(rows, chance=0.944, accuracy="pixel_accuracy")
  assert d.verdict == "underfitting" and "not learning at all" in d.explanation
  assert "chance level 0.944" in d.explanation
  for row in rows:  # the same scenes, most stroke pixels right
    row.update(train_pixel_accuracy=0.985, val_pixel_accuracy=0.982)
  assert diagnose(rows, chance=0.944, accuracy="pixel_accuracy").verdict == "good fit"
