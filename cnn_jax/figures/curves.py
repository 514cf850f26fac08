"""Learning curves of any task: train vs validation per epoch, one panel per metric, with
the best epoch by the run's primary metric marked."""

import math

from cnn_jax.figures.classification import TRAIN_COLOR, VAL_COLOR, new_figure, save_figure

MAX_PANELS = 4


def _metric_names(history: list[dict], primary: str) -> list[str]:
  """Metric names logged as ``train_X`` or ``val_X``: loss first, the primary next."""
  names = []
  for row in history:
    for key in row:
      if key.startswith(("train_", "val_")):
        name = key.split("_", 1)[1]
        if name not in names:
          names.append(name)
  primary_name = primary.split("_", 1)[1] if "_" in primary else primary
  order = ["loss", primary_name] + names
  return [n for i, n in enumerate(order) if n in names and n not in order[:i]][:MAX_PANELS]


def plot_learning_curves(history: list[dict], path: str, *,
                         primary: tuple[str, str] = ("val_loss", "min"),
                         title: str | None = None) -> str:
  """Train and validation curves per epoch with the best epoch by ``primary`` marked.

  Args:
    history: per-epoch rows as in ``metrics.jsonl`` (``epoch``, ``train_X``, ``val_X``).
    path: the PNG to write.
    primary: ``(metric, "max" | "min")``, e.g. ``("val_accuracy", "max")``.
    title: figure title.
  """
  names = _metric_names(history, primary[0]) or ["loss"]
  fig = new_figure(4.6 * len(names), 3.8)
  scored = [(r[primary[0]], r["epoch"]) for r in history
            if isinstance(r.get(primary[0]), (int, float)) and math.isfinite(r[primary[0]])]
  best = None
  if scored:
    best = (max(scored) if primary[1] == "max" else min(scored))[1]
  for i, name in enumerate(names):
    ax = fig.add_subplot(1, len(names), i + 1)
    for split, color in (("train", TRAIN_COLOR), ("val", VAL_COLOR)):
      points = [(r["epoch"], r[f"{split}_{name}"]) for r in history
                if isinstance(r.get(f"{split}_{name}"), (int, float))]
      if points:
        x, y = zip(*points)
        ax.plot(x, y, "o-", color=color, markersize=3,
                label="validation" if split == "val" else split)
    if best is not None:
      ax.axvline(best, color="gray", linestyle=":", label=f"best {primary[0]} (epoch {best})")
    ax.set_xlabel("epoch")
    ax.set_title(name.replace("_", " "))
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=8)
  if title:
    fig.suptitle(title)
  return save_figure(fig, path)
