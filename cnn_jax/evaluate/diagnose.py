"""Over/underfitting diagnosis from the per-epoch history of a run.

The history is the list of rows the train loop appends to ``workdir/metrics.jsonl``, one
per epoch: ``{"epoch", "train_loss", "val_loss", "train_accuracy", "val_accuracy", ...}``.
The rules, in order (each threshold is a keyword of :func:`diagnose`):

1. **not enough data**: fewer than ``min_epochs`` epochs with finite train and
   validation losses.
2. **overfitting**: the mean train accuracy of the last ``window`` epochs exceeds the
   validation accuracy by more than ``max_accuracy_gap``; or the validation loss has
   risen from its minimum: the epochs after the minimum (at least two; the last
   ``window`` of them) average more than ``max_val_loss_rise`` (relative) above it while
   the train loss kept falling. (If the train loss rose as well, training is unstable,
   which is reported but not called overfitting.)
3. **underfitting**: the recent train accuracy is below ``min_train_accuracy``, or it has
   come less than ``chance_margin`` of the way from the chance level (what a constant
   prediction scores: ``1 / K`` for K classes, the background share of the pixels for
   segmentation) to 1, which is called "not learning at all". Without accuracies in the
   history this rule is skipped.
4. **good fit** otherwise.

"Accuracy" is the metric named by ``accuracy`` (``train_<name>`` and ``val_<name>`` in the
history): ``"accuracy"`` for classifiers, ``"pixel_accuracy"`` for segmentation, where the
chance level matters most (a network that paints everything background scores 0.94 on
scenes that are 94% background).

The advice names the run's best checkpoint by its primary metric (the one the best
checkpoint is kept by), with its step and epoch, only when that checkpoint exists.

Averaging over a window keeps one noisy epoch from flipping the verdict. Train metrics
are measured during training (with dropout and augmentation on), so a small negative gap
is normal.
"""

import dataclasses
import math

OVERFITTING = "overfitting"
UNDERFITTING = "underfitting"
GOOD_FIT = "good fit"
NOT_ENOUGH_DATA = "not enough data"


@dataclasses.dataclass(frozen=True)
class Diagnosis:
  """The verdict on a run.

  Attributes:
    verdict: one of ``"overfitting"``, ``"underfitting"``, ``"good fit"``,
      ``"not enough data"``.
    explanation: plain-language reasons, quoting the numbers used.
    advice: what to try next, one suggestion per item.
    evidence: the numbers behind the verdict (final and recent metrics, gap, best epoch).
    best_epoch: the best epoch by the primary metric (``None`` without one).
  """
  verdict: str
  explanation: str
  advice: list[str]
  evidence: dict[str, float]
  best_epoch: int | None

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  def __str__(self) -> str:
    lines = [f"Diagnosis: {self.verdict}", self.explanation]
    lines += [f"  - {a}" for a in self.advice]
    return "\n".join(lines)


def _finite(row: dict, key: str) -> bool:
  value = row.get(key)
  return isinstance(value, (int, float)) and math.isfinite(value)


def _mean(rows: list[dict], key: str) -> float:
  return sum(r[key] for r in rows) / len(rows)


def _best_checkpoint_advice(rows: list[dict], primary: tuple[str, str],
                            checkpoints: dict | None) -> tuple[str, int | None]:
  """Where the best weights are: the kept best checkpoint (step, epoch, value), or the best
  epoch by the primary metric when no checkpoint information is given."""
  metric, mode = primary
  scored = [r for r in rows if _finite(r, metric)]
  if not scored:
    return "", None
  pick = max if mode == "max" else min
  best_row = pick(scored, key=lambda r: r[metric])
  if not checkpoints or checkpoints.get("best") is None:
    return (f"By {metric} the best epoch was {best_row.get('epoch')} ({best_row[metric]:.4f}).",
            best_row.get("epoch"))
  step = checkpoints["best"]
  row = next((r for r in rows if r.get("step") == step), None)
  epoch = row.get("epoch") if row else step // max(checkpoints.get("steps_per_epoch", 1), 1)
  value = f", {metric} {row[metric]:.4f}" if row and _finite(row, metric) else ""
  return (f"The best checkpoint by {metric} is step {step} (epoch {epoch}{value}): "
          "`python -m cnn_jax eval --workdir ... --checkpoint best` restores it.", epoch)


def diagnose(history: list[dict], *, chance: float | None = None,
             primary: tuple[str, str] = ("val_loss", "min"), checkpoints: dict | None = None,
             accuracy: str | None = "accuracy", min_epochs: int = 3,
             window: int = 3, max_accuracy_gap: float = 0.10, max_val_loss_rise: float = 0.10,
             min_train_accuracy: float = 0.80, chance_margin: float = 0.05) -> Diagnosis:
  """Says whether a run over- or underfits, from its per-epoch history.

  Args:
    history: per-epoch rows as in ``metrics.jsonl`` (a repeated epoch, e.g. after a resume,
      keeps its last row).
    chance: the accuracy of a constant prediction (the task's ``chance_accuracy``);
      ``None`` skips the "not learning at all" check.
    primary: ``(metric, "max" | "min")``, the run's primary metric.
    checkpoints: ``{"best": step, "steps_per_epoch": n}`` of the kept checkpoints; the
      advice then points at the best kept one.
    accuracy: the accuracy-like metric the rules compare (``None``: the task has none, and
      only the losses are judged).
    min_epochs: fewer epochs with finite train and validation loss give "not enough data".
    window: how many final epochs are averaged for the recent metrics.
    max_accuracy_gap: train minus validation accuracy above this is overfitting.
    max_val_loss_rise: validation loss after its minimum averaging more than this fraction
      above it (with the train loss still falling) is overfitting.
    min_train_accuracy: recent train accuracy below this is underfitting.
    chance_margin: train accuracy less than this fraction of the way from ``chance`` to 1
      means the model is not learning.

  Returns:
    A :class:`Diagnosis`.
  """
  by_epoch = {}
  for i, row in enumerate(history):
    by_epoch[row.get("epoch", i + 1)] = row
  rows = [by_epoch[e] for e in sorted(by_epoch)]
  diverged = [r for r in rows
              if any(k in r and not _finite(r, k) for k in ("train_loss", "val_loss"))]
  rows = [r for r in rows if _finite(r, "train_loss") and _finite(r, "val_loss")]
  note = ""
  if diverged:
    note = (f" The loss was not finite (NaN or inf) from epoch {diverged[0].get('epoch')}; "
            "those epochs are ignored.")
  if len(rows) < min_epochs:
    return Diagnosis(
        NOT_ENOUGH_DATA,
        f"Only {len(rows)} epoch(s) have both a train and a validation loss; at least "
        f"{min_epochs} are needed to judge the fit." + note,
        ["Train for more epochs and evaluate on a validation split every epoch."]
        + (["Lower the learning rate or clip gradients to stop the loss diverging."]
           if diverged else []),
        {"epochs": len(rows)}, None)

  recent = rows[-window:]
  best = min(rows, key=lambda r: r["val_loss"])
  best_advice, best_epoch = _best_checkpoint_advice(rows, primary, checkpoints)
  use_best = [best_advice] if best_advice else []
  ev = {
      "epochs": len(rows),
      "final_train_loss": rows[-1]["train_loss"],
      "final_val_loss": rows[-1]["val_loss"],
      "best_epoch": best_epoch,
      "min_val_loss_epoch": best.get("epoch"),
      "best_val_loss": best["val_loss"],
      "recent_train_loss": _mean(recent, "train_loss"),
      "recent_val_loss": _mean(recent, "val_loss"),
  }
  # The rise is measured over the (last `window`) epochs after the minimum, and needs two.
  after = rows[rows.index(best) + 1:][-window:]
  ev["val_loss_rise"] = 0.0
  train_still_falling = False
  if len(after) >= 2:
    ev["val_loss_after_best"] = _mean(after, "val_loss")
    ev["val_loss_rise"] = (ev["val_loss_after_best"] - best["val_loss"]) / max(
        best["val_loss"], 1e-12)
    train_still_falling = _mean(after, "train_loss") < best["train_loss"]
  train_acc, val_acc = f"train_{accuracy}", f"val_{accuracy}"
  has_acc = accuracy is not None and all(_finite(r, train_acc) and _finite(r, val_acc)
                                         for r in recent)
  if has_acc:
    ev["final_train_accuracy"] = rows[-1][train_acc]
    ev["final_val_accuracy"] = rows[-1][val_acc]
    ev["recent_train_accuracy"] = _mean(recent, train_acc)
    ev["recent_val_accuracy"] = _mean(recent, val_acc)
    ev["accuracy_gap"] = ev["recent_train_accuracy"] - ev["recent_val_accuracy"]
  if chance is not None:
    ev["chance_accuracy"] = chance
  label = (accuracy or "").replace("_", " ")
  span = f"the last {len(recent)} epochs"

  reasons = []
  if has_acc and ev["accuracy_gap"] > max_accuracy_gap:
    reasons.append(
        f"over {span} train {label} averages {ev['recent_train_accuracy']:.3f} but "
        f"validation {label} only {ev['recent_val_accuracy']:.3f}, a gap of "
        f"{ev['accuracy_gap']:.3f} (limit {max_accuracy_gap:.2f})")
  if ev["val_loss_rise"] > max_val_loss_rise and train_still_falling:
    reasons.append(
        f"validation loss reached its minimum {best['val_loss']:.4f} at epoch {best.get('epoch')} "
        f"and has since risen to {ev['val_loss_after_best']:.4f} on average "
        f"(+{100 * ev['val_loss_rise']:.0f}%, limit {100 * max_val_loss_rise:.0f}%) while the "
        f"train loss kept falling to {rows[-1]['train_loss']:.4f}")
  if reasons:
    return Diagnosis(
        OVERFITTING,
        "The model fits the training data much better than unseen data: "
        + "; and ".join(reasons) + "." + note,
        ["Reduce capacity (fewer or narrower layers).",
         "Add regularization: dropout, weight decay, or stronger data augmentation.",
         "Get more training data.",
         "Stop early: train for fewer epochs."] + use_best,
        ev, best_epoch)

  at_chance = (has_acc and chance is not None
               and ev["recent_train_accuracy"] - chance < chance_margin * (1 - chance))
  if has_acc and (at_chance or ev["recent_train_accuracy"] < min_train_accuracy):
    level = (f"{ev['recent_train_accuracy']:.3f} averaged over {span}, below "
             f"{min_train_accuracy:.2f}")
    if at_chance:
      what = (f"The model is not learning at all: train {label} is "
              f"{ev['recent_train_accuracy']:.3f} averaged over {span}, at the chance level "
              f"{chance:.3f} that a constant prediction scores.")
      advice = ["Check the labels and the input normalization.",
                "Try a different learning rate (too high diverges, too low does not move)."]
    else:
      what = (f"The model does not fit even the training data: train {label} is {level}"
              + (f" (chance is {chance:.3f})" if chance is not None else "")
              + f"; validation {label} is {ev['recent_val_accuracy']:.3f}.")
      advice = []
    return Diagnosis(
        UNDERFITTING, what + note,
        advice + ["Increase capacity (more or wider layers).",
                  "Train longer" + (" (the train loss is still falling)."
                                    if rows[-1]["train_loss"] < rows[-len(recent)]["train_loss"]
                                    else "."),
                  "Raise the learning rate or use a schedule with warmup.",
                  "Reduce regularization (dropout, weight decay, augmentation)."],
        ev, best_epoch)

  acc = (f"train {label} {ev['recent_train_accuracy']:.3f} and validation {label} "
         f"{ev['recent_val_accuracy']:.3f} over {span} (gap {ev['accuracy_gap']:.3f}), "
         if has_acc else "" if accuracy is None else
         f"{label} was not logged, so underfitting was not checked; ")
  if ev["val_loss_rise"] > max_val_loss_rise:
    loss = (f"validation loss {ev['val_loss_after_best']:.4f} is "
            f"{100 * ev['val_loss_rise']:.0f}% above its minimum {best['val_loss']:.4f}, but "
            "the train loss rose as well, which points to unstable training rather than "
            "overfitting.")
    advice = ["Lower the learning rate or decay it faster."] + use_best
  else:
    loss = (f"validation loss ends at {rows[-1]['val_loss']:.4f} with no sustained rise "
            f"above its minimum {best['val_loss']:.4f} (epoch {best.get('epoch')}).")
    advice = (["Validation loss was still falling at the last epoch: training longer may "
               "help a little."] if best is rows[-1] else []) + use_best
  return Diagnosis(GOOD_FIT, f"Training and validation agree: {acc}{loss}{note}",
                   advice, ev, best_epoch)
