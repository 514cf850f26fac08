"""Grid vs random vs TPE on the course notes' comparison problem, and pruning on vs off.

Samplers: runs ``python -m cnn_jax search`` (in-process, ``cnn_jax.search.study.run_search``)
on ``experiments/digits_search.py`` (simple CNN on digits: learning rate x weight decay x
dropout x width) once per sampler and search seed, each a resumable study in
``--workdir/<sampler>_s<seed>``, and reports the best validation accuracy so far after
each trial: a markdown table at 10, 20 and 40 trials (mean and range over the seeds) and
one plot of best-so-far vs trial number per sampler. The grid is the space's 4x3x3x4 = 144
points, tried in a random order (optuna's GridSampler), so a short budget sees only a few
distinct learning rates; random and TPE draw a new value of every hyperparameter per trial
(Bergstra & Bengio, JMLR 2012).

Pruning (``--pruning-trials N``): the same N random trials (the same seed draws the same
values) with and without the median pruner, longer trials; their wall times and epochs.

  python benchmarks/search_samplers.py --workdir runs/search_samplers --trials 40 --seeds 3 \\
      [--variant ci] [--epochs 2] [--pruning-trials 16 --pruning-epochs 8] [--fast-init]

``--fast-init`` sets ``jax_threefry_partitionable=False`` for this process: on CPU it
halves the XLA compile time of each trial's parameter initialization (the bulk of a CI
trial's wall time); the initial parameters then differ from a ``train`` run's.
"""

import argparse
import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

import numpy as np  # noqa: E402

from cnn_jax.search.study import run_search  # noqa: E402

SAMPLERS = ("grid", "random", "tpe")
COLORS = {"grid": "tab:gray", "random": "tab:blue", "tpe": "tab:orange"}
CHECKPOINTS = (10, 20, 40)


def best_so_far(study, trials: int) -> list[float]:
  """The best objective among trials ``0..n`` for each ``n < trials`` (NaN before any)."""
  values = {t.number: t.value for t in study.trials if t.value is not None
            and t.state.name == "COMPLETE"}
  best, curve = float("nan"), []
  for n in range(trials):
    if n in values and not values[n] <= best:
      best = values[n]
    curve.append(best)
  return curve


def plot(curves: dict[str, np.ndarray], path: str, title: str) -> str:
  """Mean best-so-far per sampler, the band from the worst to the best seed."""
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure
  fig = Figure(figsize=(7, 4.5), layout="constrained")
  FigureCanvasAgg(fig)
  ax = fig.add_subplot()
  for sampler, runs in curves.items():
    x = np.arange(1, runs.shape[1] + 1)
    ax.plot(x, np.nanmean(runs, 0), color=COLORS[sampler],
            label=f"{sampler} (mean of {runs.shape[0]} seeds)")
    ax.fill_between(x, np.nanmin(runs, 0), np.nanmax(runs, 0), color=COLORS[sampler], alpha=0.15)
  ax.set(xlabel="trial", ylabel="best validation accuracy so far", title=title)
  ax.grid(alpha=0.3)
  ax.legend(loc="lower right")
  fig.savefig(path, dpi=110)
  return path


def compare_samplers(args, config: str, overrides: list[str]) -> dict:
  curves = {}
  for sampler in SAMPLERS:
    runs = []
    for seed in range(args.seeds):
      result = run_search(config, os.path.join(args.workdir, f"{sampler}_s{seed}"),
                          sampler=sampler, trials=args.trials, seed=seed, overrides=overrides,
                          log=lambda line: None)
      runs.append(best_so_far(result["study"], args.trials))
      print(f"{sampler} seed {seed}: best {runs[-1][-1]:.4f}", file=sys.stderr)
    curves[sampler] = np.array(runs)
  table = ["| sampler | " + " | ".join(f"best val acc after {n}" for n in CHECKPOINTS
                                        if n <= args.trials) + " |",
           "|---|" + "---|" * sum(n <= args.trials for n in CHECKPOINTS)]
  for sampler, runs in curves.items():
    cells = [f"{np.nanmean(runs[:, n - 1]):.4f} ({np.nanmin(runs[:, n - 1]):.4f}-"
             f"{np.nanmax(runs[:, n - 1]):.4f})" for n in CHECKPOINTS if n <= args.trials]
    table.append(f"| {sampler} | " + " | ".join(cells) + " |")
  path = plot(curves, os.path.join(args.workdir, "best_so_far.png"),
              f"digits simple CNN, {args.seeds} search seeds")
  return {"table": "\n".join(table), "plot": path,
          "curves": {k: v.tolist() for k, v in curves.items()}}


def compare_pruning(args, config: str, overrides: list[str]) -> dict:
  overrides = overrides + [f"train.epochs={args.pruning_epochs}"]
  rows = {}
  for pruner in ("none", "median"):
    start = time.perf_counter()
    result = run_search(config, os.path.join(args.workdir, f"pruning_{pruner}"), sampler="random",
                        trials=args.pruning_trials, pruner=pruner, seed=0, overrides=overrides,
                        log=lambda line: None)
    trials = result["study"].trials
    rows[pruner] = {
        "wall_s": round(time.perf_counter() - start, 1),
        "epochs": sum(t.user_attrs.get("epochs") or 0 for t in trials),
        "pruned": sum(t.state.name == "PRUNED" for t in trials),
        "best": max(t.value for t in trials if t.value is not None)}
    print(f"pruner {pruner}: {rows[pruner]}", file=sys.stderr)
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--workdir", required=True, help="one study dir per sampler and seed")
  parser.add_argument("--trials", type=int, default=40, help="trials per study")
  parser.add_argument("--seeds", type=int, default=3, help="search seeds per sampler")
  parser.add_argument("--variant", default="ci", help="digits_search.py variant ('' or 'ci')")
  parser.add_argument("--epochs", type=int, default=0, help="epochs per trial; 0: the variant's")
  parser.add_argument("--pruning-trials", type=int, default=0,
                      help="trials of the pruning comparison (0: skip it)")
  parser.add_argument("--pruning-epochs", type=int, default=8, help="epochs per pruning trial")
  parser.add_argument("--fast-init", action="store_true",
                      help="jax_threefry_partitionable=False (faster init compiles on CPU)")
  parser.add_argument("--skip-samplers", action="store_true", help="only the pruning comparison")
  args = parser.parse_args()
  if args.fast_init:
    import jax
    jax.config.update("jax_threefry_partitionable", False)
  config = os.path.join(REPO, "experiments", "digits_search.py")
  config += f":{args.variant}" if args.variant else ""
  overrides = [f"train.epochs={args.epochs}"] if args.epochs else []
  os.makedirs(args.workdir, exist_ok=True)
  start = time.perf_counter()
  results = {"args": vars(args)}
  if not args.skip_samplers:
    results["samplers"] = compare_samplers(args, config, overrides)
    print(results["samplers"]["table"])
  if args.pruning_trials:
    results["pruning"] = compare_pruning(args, config, overrides)
  results["wall_s"] = round(time.perf_counter() - start, 1)
  with open(os.path.join(args.workdir, "results.json"), "w") as f:
    json.dump(results, f, indent=2)
  print(json.dumps({k: v for k, v in results.items() if k != "samplers"}, indent=2))


if __name__ == "__main__":
  main()
