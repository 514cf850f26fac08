"""A study's results: the trial table (markdown and CSV), optuna's matplotlib plots and the
best trial as a runnable experiment file, all written into the study dir.

``python -m cnn_jax search-report --study-dir DIR`` (:func:`write_report`) regenerates them.
"""

import csv
import os
import warnings

import optuna

from cnn_jax import config as config_lib
from cnn_jax.search import space as space_lib
from cnn_jax.search.study import load_study, trial_dir

TABLE_MD, TABLE_CSV, BEST_FILE, PLOTS_DIR = "trials.md", "trials.csv", "best_experiment.py", "plots"
# optuna.visualization.matplotlib functions -> PNG names; those needing two or more
# complete trials (importances, contour) are skipped with fewer.
PLOTS = {"optimization_history": "plot_optimization_history",
         "param_importances": "plot_param_importances",
         "parallel_coordinate": "plot_parallel_coordinate", "slice": "plot_slice",
         "contour": "plot_contour", "intermediate_values": "plot_intermediate_values"}


def trial_rows(study: optuna.Study, metric: str) -> list[dict]:
  """One row per trial: number, state, each parameter, the objective, epochs and wall time."""
  keys = sorted({k for t in study.trials for k in t.params})
  rows = []
  for t in study.trials:
    rows.append({"trial": t.number, "state": t.state.name,
                 **{k: t.params.get(k) for k in keys},
                 metric: t.value, "epochs": t.user_attrs.get("epochs"),
                 "wall_s": t.user_attrs.get("wall_s"),
                 "resumed_from_step": t.user_attrs.get("resumed_from")})
  return rows


def _cell(value) -> str:
  if value is None:
    return ""
  if isinstance(value, float):
    return f"{value:.4g}"
  return str(value)


def write_table(rows: list[dict], study_dir: str) -> tuple[str, str]:
  """``trials.md`` and ``trials.csv`` in ``study_dir``; returns both paths."""
  columns = list(rows[0]) if rows else ["trial", "state"]
  md, csv_path = os.path.join(study_dir, TABLE_MD), os.path.join(study_dir, TABLE_CSV)
  with config_lib.atomic_write(md) as f:
    f.write("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns) + "\n")
    for row in rows:
      f.write("| " + " | ".join(_cell(row[c]) for c in columns) + " |\n")
  with config_lib.atomic_write(csv_path) as f:
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    writer.writerows(rows)
  return md, csv_path


def write_plots(study: optuna.Study, study_dir: str) -> dict[str, str]:
  """optuna's matplotlib plots of the study as PNGs in ``STUDY/plots``; ``{name: path}``."""
  import matplotlib.pyplot as plt
  from optuna.visualization import matplotlib as optuna_plots
  complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
  paths = {}
  for name, function in PLOTS.items():
    if len(complete) < (2 if name in ("param_importances", "contour") else 1):
      continue
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")  # optuna's "experimental" notes on every plot
      axes = getattr(optuna_plots, function)(study)
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    figure = first.figure
    figure.set_size_inches(max(figure.get_size_inches()[0], 7.0), 5.0)
    paths[name] = os.path.join(study_dir, PLOTS_DIR, f"{name}.png")
    os.makedirs(os.path.dirname(paths[name]), exist_ok=True)
    figure.savefig(paths[name], dpi=100, bbox_inches="tight")
    plt.close(figure)
  return paths


def write_best_experiment(study: optuna.Study, settings: dict, study_dir: str) -> str | None:
  """``best_experiment.py``: the searched experiment with the best trial's overrides (and
  the search's own ``--config`` overrides), runnable with ``train --config``."""
  complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
  if not complete:
    return None
  best = study.best_trial
  base = settings["config"]
  file, variant = base.rsplit(":", 1) if ".py:" in base else (base, "")
  overrides = list(settings["overrides"]) + space_lib.overrides(best.params)
  lines = [
      f'"""The best trial ({best.number}) of the search in {os.path.abspath(study_dir)}:',
      f"{settings['metric']} {best.value:.4f} on the validation split. The searched experiment",
      "with the trial's overrides; its run is in " + os.path.abspath(
          trial_dir(study_dir, best.number)) + ".",
      "",
      f"  python -m cnn_jax train --config {os.path.join(study_dir, BEST_FILE)} --workdir DIR",
      '"""', "", "from cnn_jax import config as config_lib", "",
      f"EXPERIMENT = {os.path.abspath(file) + (':' + variant if variant else '')!r}",
      "OVERRIDES = [", *[f"    {o!r}," for o in overrides], "]", "", "",
      "def get_config():",
      "  config = config_lib.load_config(EXPERIMENT)",
      "  config_lib.apply_overrides(config, OVERRIDES)",
      "  return config", ""]
  path = os.path.join(study_dir, BEST_FILE)
  with config_lib.atomic_write(path) as f:
    f.write("\n".join(lines))
  return path


def write_report(study_dir: str, storage: str | None = None) -> dict:
  """Table, plots and best experiment file of the study in ``study_dir``.

  Returns:
    ``{"table": md path, "csv": csv path, "plots": {name: path}, "best_experiment": path or
    None, "rows": [row, ...]}``.
  """
  study, settings = load_study(study_dir, storage)
  rows = trial_rows(study, settings["metric"])
  md, csv_path = write_table(rows, study_dir)
  return {"table": md, "csv": csv_path, "plots": write_plots(study, study_dir),
          "best_experiment": write_best_experiment(study, settings, study_dir), "rows": rows}
