"""Architecture comparison: ``python -m cnn_jax compare --models a,b --budget epochs 30``.

Trains every model on the same data under the same budget, each seed as its own resumable run
(:func:`cnn_jax.experiment.train`) in ``<workdir>/runs/<model>-seed<k>``; measures each model
with the bench command's timer (:func:`cnn_jax.bench.benchmark`, train and inference steps,
cached in ``<workdir>/bench/<model>.json``); then writes one table -- parameters, GFLOPs per
image, train and inference images/s, compile s, memory, epochs, wall time, test accuracy
(mean ± std over seeds) -- as ``table.md``, ``table.json`` and ``table.csv``, and plots test
accuracy against GFLOPs, parameters (log axes) and wall time.

Budgets: ``("epochs", N)`` trains N epochs; ``("minutes", M)`` gives each model M minutes of
training steps: M x 60 s x its benchmarked training steps/s, a step count the run ends at
(``train.max_steps``, mid-epoch if need be) and its cosine schedule decays over;
compilation and evaluation come on top. The step counts (and epochs) are recorded in
``<workdir>/plan.json`` and fixed in each run's config, so a re-run resumes the same runs
exactly (the clock is not read again); finished runs are skipped (their saved test results
are read back).

Every family has one recipe (:data:`RECIPES`, printed with the table): SGD with Nesterov
momentum 0.9 at batch 128 and a warmup-cosine schedule, 4-pixel translation and horizontal
flips; the peak learning rate and weight decay follow each family's paper or reference
CIFAR implementation. ``quick`` trains on a stratified 500-image subset of the training
set and validates and tests on 200 and 500 other training images (the test file stays
unused), so the whole table appears in minutes on a CPU.
"""

import csv
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from typing import TextIO

import ml_collections

from cnn_jax import bench
from cnn_jax import config as config_lib
from cnn_jax.data.augment import augment_config
from cnn_jax.data.presets import dataset_preset
from cnn_jax.errors import CnnJaxError, ConfigError
from cnn_jax.figures.classification import new_figure, save_figure
from cnn_jax.models import create

DEFAULT_MODELS = ("lenet5", "alexnet_cifar", "vgg11_bn_cifar", "nin_cifar", "googlenet_cifar",
                  "cifar_resnet20", "cifar_resnet56")
BUDGET_KINDS = ("epochs", "minutes")
BATCH_SIZE = 128

# The CIFAR-10 section (cifar10_jpeg.npz of the shared data): 49,000 training and 1,000
# validation images (a CPU evaluates the larger models at tens of images/s), its own 10k test
# split.
CIFAR10 = {"name": "cifar10_jpeg", "file": "cifar10_jpeg.npz", "data_dir": "", "image_size": 0,
           "resize": "bilinear", "normalize": "cifar10", "val_fraction": 1000,
           "test_fraction": 0.0}
# --quick: a stratified training subset, validation and test both from the training images;
# benchmarks at a smaller batch (a CPU needs seconds per step of the larger models).
QUICK_SPLITS = {"train_subset": 500, "val_fraction": 200, "test_fraction": 500}
QUICK_BENCH_BATCH_SIZE = 32
QUICK_BUDGET = ("epochs", 1)


@dataclasses.dataclass(frozen=True)
class Recipe:
  """The optimizer settings of one model family and where they come from."""
  learning_rate: float
  weight_decay: float
  source: str

  def describe(self) -> str:
    return (f"SGD-Nesterov lr {self.learning_rate:g}, weight decay {self.weight_decay:g} "
            f"({self.source})")


# Model-name prefix -> recipe; the first matching prefix wins.
RECIPES = {
    "lenet": Recipe(0.01, 5e-4, "no batch norm: a small rate"),
    "alexnet": Recipe(0.01, 5e-4, "Krizhevsky et al. 2012; bearpaw trains it at 0.01"),
    "vgg": Recipe(0.05, 5e-4, "Simonyan & Zisserman's decay; 0.05 with batch norm"),
    "nin": Recipe(0.01, 1e-4, "no batch norm: Lin et al. start small"),
    "googlenet": Recipe(0.1, 5e-4, "kuangliu/pytorch-cifar"),
    "cifar_resnet": Recipe(0.1, 1e-4, "He et al. 2015, section 4.2"),
}
DEFAULT_RECIPE = Recipe(0.05, 5e-4, "the default for other families")


def recipe_for(model: str) -> Recipe:
  """The recipe of ``model``'s family (:data:`RECIPES`, else :data:`DEFAULT_RECIPE`)."""
  return next((r for prefix, r in RECIPES.items() if model.startswith(prefix)), DEFAULT_RECIPE)


def dataset_section(dataset: str, quick: bool, image_size: int = 32) -> ml_collections.ConfigDict:
  """The ``dataset`` section for ``dataset`` ("cifar10", or a preset of
  :mod:`cnn_jax.data.presets` resized to ``image_size``), with the quick splits if asked."""
  quick_splits = QUICK_SPLITS if quick else {}
  if dataset == "cifar10":
    return ml_collections.ConfigDict({**CIFAR10, **quick_splits})
  try:
    return dataset_preset(dataset, **{"image_size": image_size, "train_subset": 0,
                                      **quick_splits})
  except ConfigError:
    raise ConfigError(f"compare --dataset must be cifar10, digits, mnist or fashion_mnist, "
                      f"got {dataset!r}.") from None


def run_config(model: str, dataset: ml_collections.ConfigDict, epochs: float, seed: int,
               num_devices: int = 0, max_steps: int = 0) -> ml_collections.ConfigDict:
  """The experiment config of one comparison run: ``model`` under its family's recipe,
  ``epochs`` long (a fraction for a run that ``max_steps`` > 0 ends mid-epoch); the warmup
  is the first fifth of the run, at most one epoch."""
  recipe = recipe_for(model)
  config = ml_collections.ConfigDict()
  config.seed = seed
  config.dataset = ml_collections.ConfigDict(dataset.to_dict())
  config.augment = augment_config(crop_padding=4, flip=True)
  config.model = ml_collections.ConfigDict({"name": model, "dtype": "float32"})
  config.optimizer = ml_collections.ConfigDict({
      "name": "sgd", "learning_rate": recipe.learning_rate, "momentum": 0.9, "nesterov": True,
      "weight_decay": recipe.weight_decay})
  config.schedule = ml_collections.ConfigDict({"name": "warmup_cosine",
                                               "warmup_epochs": min(1.0, epochs / 5)})
  config.train = config_lib.train_section(epochs=math.ceil(epochs), batch_size=BATCH_SIZE,
                                          eval_batch_size=500, num_devices=num_devices,
                                          progress=False)
  if max_steps:
    config.train.max_steps = max_steps
  return config


def parse_budget(budget) -> tuple[str, float]:
  """``("epochs", N)`` or ``("minutes", M)`` from a pair such as ``["epochs", "30"]``."""
  try:
    kind, amount = budget[0], float(budget[1])
  except (TypeError, ValueError, IndexError):
    raise ConfigError(f"--budget takes 'epochs N' or 'minutes M', got {budget!r}.") from None
  if kind not in BUDGET_KINDS or not amount > 0 or (kind == "epochs" and amount % 1):
    raise ConfigError(f"--budget takes 'epochs N' (a whole number > 0) or 'minutes M' (> 0), "
                      f"got {' '.join(map(str, budget))!r}.")
  return kind, amount


def _read_json(path: str):
  with open(path) as f:
    return json.load(f)


def _write_json(path: str, value) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with config_lib.atomic_write(path) as f:
    json.dump(value, f, indent=1)


def measure(model: str, workdir: str, image_shape: tuple[int, int, int], num_classes: int,
            seconds: float, batch_size: int, num_devices: int = 0) -> dict:
  """Train and inference benchmarks of ``model`` (synthetic data of ``image_shape``), read
  from ``<workdir>/bench/<model>.json`` if measured before."""
  path = os.path.join(workdir, "bench", f"{model}.json")
  if os.path.exists(path):
    return _read_json(path)
  height, _, channels = image_shape
  results = {mode: bench.benchmark(model, batch_size=batch_size, image_size=height,
                                   channels=channels, mode=mode, seconds=seconds, repeats=3,
                                   warmup=1, num_classes=num_classes, num_devices=num_devices)
             for mode in ("train", "infer")}
  _write_json(path, results)
  return results


def _memory_mb(result: dict) -> tuple[float | None, bool]:
  """``(MiB, measured)``: the device's measured peak, else XLA's static estimate of the
  compiled step (arguments plus temporaries; the outputs reuse the donated arguments)."""
  if result["peak_memory_mb"] is not None:
    return result["peak_memory_mb"], True
  xla = result["xla_memory_mb"]
  return (None, False) if xla is None else (xla["arguments"] + xla["temp"], False)


def _train_split_size(dataset: ml_collections.ConfigDict, seed: int) -> int:
  """The number of training examples the runs will use (the data is loaded once)."""
  from cnn_jax import data as data_lib
  config = ml_collections.ConfigDict({"dataset": dataset.to_dict(), "seed": seed})
  return data_lib.prepare(config, None).sizes()["train"]


def plan_runs(models: list[str], budget: tuple[str, float], workdir: str,
              measurements: dict, dataset: ml_collections.ConfigDict) -> dict[str, dict]:
  """``{model: {"epochs": E, "max_steps": S}}``: the budget's epochs (``S`` 0), or minutes
  turned into ``S`` training steps with each model's benchmarked training images/s (``E``
  the fraction of an epoch they make, rounded to 3 places; at least one step). Kept in
  ``<workdir>/plan.json`` (a re-run reuses it; a different budget there is a
  ConfigError)."""
  path = os.path.join(workdir, "plan.json")
  plan = _read_json(path) if os.path.exists(path) else {"budget": list(budget), "epochs": {}}
  if tuple(plan["budget"]) != tuple(budget):
    raise ConfigError(f"{workdir} holds a comparison with budget {plan['budget'][0]} "
                      f"{plan['budget'][1]:g}, not {budget[0]} {budget[1]:g}; repeat that "
                      "budget to resume it, or use a new --workdir.")
  kind, amount = budget
  steps = plan.setdefault("steps", {})
  missing = [m for m in models if m not in plan["epochs"]]
  train_size = _train_split_size(dataset, 0) if kind == "minutes" and missing else 0
  for model in missing:
    if kind == "epochs":
      plan["epochs"][model], steps[model] = int(amount), 0
    else:
      images_per_s = measurements[model]["train"]["images_per_s"]["median"]
      steps[model] = max(1, math.floor(amount * 60 * images_per_s / BATCH_SIZE))
      per_epoch = train_size // BATCH_SIZE
      plan["epochs"][model] = round(steps[model] / per_epoch, 3)
  _write_json(path, plan)
  return {m: {"epochs": plan["epochs"][m], "max_steps": steps.get(m, 0)} for m in models}


def train_run(config: ml_collections.ConfigDict, run_dir: str) -> dict:
  """Trains one run (or reads back a finished one): test metrics, epochs and training wall
  time (the logged epoch times, which add up over resumes)."""
  from cnn_jax.experiment import train
  from cnn_jax.train.logging import read_history
  done = os.path.join(run_dir, "compare_result.json")
  if os.path.exists(done):
    result = _read_json(done)
    if result["config"] == config_lib.to_dict(config):
      return result
  start = time.perf_counter()
  outcome = train(config, run_dir)
  run_s = time.perf_counter() - start
  history = read_history(run_dir)
  result = {"config": config_lib.to_dict(config),
            "test_accuracy": float(outcome["test"]["accuracy"]),
            "epochs": history[-1]["epoch"], "steps": history[-1]["step"],
            "wall_s": sum(row["epoch_time_s"] for row in history), "run_s": run_s}
  _write_json(done, result)
  return result


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
  if not values:
    return None, None
  return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def table_row(model: str, measurement: dict, runs: list[dict], errors: list[str]) -> dict:
  """One row of the comparison table from a model's benchmarks and runs."""
  train, infer = measurement["train"], measurement["infer"]
  memory, measured = _memory_mb(train)
  accuracies = [r["test_accuracy"] for r in runs]
  mean, std = _mean_std(accuracies)
  gflops = infer["gflops_per_step"]
  return {
      "model": model, "recipe": recipe_for(model).describe(), "params": train["params"],
      "gflops_per_image": None if gflops is None else gflops / infer["batch_size"],
      "train_images_per_s": train["images_per_s"]["median"],
      "infer_images_per_s": infer["images_per_s"]["median"],
      "compile_s": train["lower_s"] + train["compile_s"],
      "memory_mb": memory, "memory_measured": measured,
      "epochs": statistics.mean([r["epochs"] for r in runs]) if runs else None,
      "wall_s": statistics.mean([r["wall_s"] for r in runs]) if runs else None,
      "run_s": statistics.mean([r["run_s"] for r in runs]) if runs and all(
          "run_s" in r for r in runs) else None,
      "test_accuracy_mean": mean, "test_accuracy_std": std, "test_accuracies": accuracies,
      "seeds": len(runs), "errors": errors,
  }


def _fmt(value, spec: str) -> str:
  return "-" if value is None else format(value, spec)


def markdown_table(rows: list[dict], device: str, bench_batch_size: int, budget: str) -> str:
  """The rows as a markdown table, with the budget, the recipes and what the columns mean
  below it."""
  lines = ["| model | params | GFLOPs/img | train img/s | infer img/s | compile s | memory MiB "
           "| epochs | wall s | run s | test accuracy |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    memory = _fmt(r["memory_mb"], ",.0f") + ("" if r["memory_measured"] else "*")
    accuracy = ("failed" if r["test_accuracy_mean"] is None
                else f"{100 * r['test_accuracy_mean']:.2f}%"
                + (f" ± {100 * r['test_accuracy_std']:.2f}" if r["seeds"] > 1 else ""))
    lines.append(
        f"| {r['model']} | {r['params']:,} | {_fmt(r['gflops_per_image'], '.4f')} | "
        f"{r['train_images_per_s']:,.0f} | {r['infer_images_per_s']:,.0f} | "
        f"{r['compile_s']:.1f} | {memory} | {_fmt(r['epochs'], 'g')} | "
        f"{_fmt(r['wall_s'], '.0f')} | {_fmt(r['run_s'], '.0f')} | {accuracy} |")
  lines += ["", f"Budget: {budget} per model and seed. Device: {device}. GFLOPs/img: XLA's "
            f"count of the inference step / batch. img/s: bench medians at batch "
            f"{bench_batch_size} on synthetic data. compile s: tracing + XLA "
            "compilation of the train step. memory: measured device peak, or (*) XLA's "
            "estimate of the train step (arguments + temporaries) where the device "
            "reports none. epochs: trained (a fraction: the run ended mid-epoch). wall s: "
            "training epochs including validation (the first includes compilation). run s: "
            "the whole run (data, compilation, training, test evaluation and figures; this "
            "call's). Accuracy: mean ± std over seeds.", "", "Recipes:"]
  lines += [f"- {r['model']}: {r['recipe']}" for r in rows]
  lines += [f"- {r['model']} failed: {e}" for r in rows for e in r["errors"]]
  return "\n".join(lines) + "\n"


def write_tables(rows: list[dict], out_dir: str, device: str, bench_batch_size: int,
                 budget: str) -> dict[str, str]:
  """``table.md``, ``table.json`` and ``table.csv`` in ``out_dir``; returns their paths."""
  paths = {ext: os.path.join(out_dir, f"table.{ext}") for ext in ("md", "json", "csv")}
  with config_lib.atomic_write(paths["md"]) as f:
    f.write(markdown_table(rows, device, bench_batch_size, budget))
  _write_json(paths["json"], {"device": device, "bench_batch_size": bench_batch_size,
                              "budget": budget, "rows": rows})
  columns = [k for k in rows[0] if k not in ("test_accuracies", "errors")]
  with config_lib.atomic_write(paths["csv"]) as f:
    writer = csv.DictWriter(f, columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
  return paths


PLOTS = {"gflops": ("gflops_per_image", "GFLOPs per image (inference, XLA)", True),
         "params": ("params", "parameters", True),
         "wall_time": ("wall_s", "training wall time (s)", False)}


def plot_accuracy(rows: list[dict], path: str, x_key: str, x_label: str, log_x: bool,
                  title: str) -> str:
  """Test accuracy (mean, with ± std bars over seeds) against ``x_key``, one labelled point
  per model."""
  fig = new_figure(6.4, 4.6)
  ax = fig.subplots()
  shown = [r for r in rows if r["test_accuracy_mean"] is not None and r[x_key]]
  for r in shown:
    ax.errorbar(r[x_key], 100 * r["test_accuracy_mean"], yerr=100 * r["test_accuracy_std"],
                fmt="o", capsize=3)
    ax.annotate(r["model"], (r[x_key], 100 * r["test_accuracy_mean"]), fontsize=8,
                xytext=(4, 4), textcoords="offset points")
  if log_x:
    ax.set_xscale("log")
  ax.margins(x=0.2, y=0.15)  # room for the labels
  ax.set_xlabel(x_label + (" (log scale)" if log_x else ""))
  ax.set_ylabel("test accuracy (%)")
  ax.set_title(title)
  ax.grid(True, alpha=0.3, which="both")
  return save_figure(fig, path)


def compare(models: list[str], *, dataset: str = "cifar10", budget=None,
            seeds: int = 1, quick: bool = False, workdir: str = "runs/compare",
            bench_seconds: float | None = None, num_devices: int = 0,
            progress: TextIO | None = sys.stderr) -> dict:
  """Trains and measures ``models`` and writes the comparison table and plots.

  Args:
    models: registered model names.
    dataset: "cifar10" (needs cifar10_jpeg.npz in the data directory) or a preset name
      ("digits", "mnist", "fashion_mnist"; resized to 32x32).
    budget: ``("epochs", N)`` or ``("minutes", M)`` per model and seed; with ``quick`` it
      defaults to :data:`QUICK_BUDGET`.
    seeds: runs per model (seeds 0 .. seeds-1), for the mean ± std of the accuracy.
    quick: train on 500 images, validate on 200 and test on 500 other training images;
      benchmark at batch 32.
    workdir: the comparison's folder (runs, benchmarks, plan, tables, plots).
    bench_seconds: each benchmark's timing budget (default 1 s quick, 10 s otherwise).
    num_devices: devices of every run and benchmark (0: all).
    progress: a stream for one line per phase, or None.

  Returns:
    ``{"rows": [...], "tables": {ext: path}, "plots": {name: path}, "recipes": {...}}``.

  Raises:
    CnnJaxError: an unknown model or dataset, a bad budget or seed count, or a workdir
      holding a comparison with another budget.
  """
  if not models:
    raise ConfigError("compare needs at least one model: --models a,b,...")
  for name in models:
    create(name)  # an unknown name fails now
  if seeds < 1:
    raise ConfigError(f"compare --seeds must be >= 1, got {seeds}.")
  if budget is None and not quick:
    raise ConfigError("compare needs a budget: --budget epochs N or --budget minutes M "
                      "(or --quick).")
  budget = parse_budget(budget or QUICK_BUDGET)
  say = (lambda text: print(text, file=progress, flush=True)) if progress else (lambda text: None)
  section = dataset_section(dataset, quick)
  recipes = {m: recipe_for(m).describe() for m in models}
  for model, text in recipes.items():
    say(f"recipe {model}: {text}")
  image_shape, num_classes = _data_shape(section)
  seconds = bench_seconds or (1.0 if quick else 10.0)
  bench_batch_size = QUICK_BENCH_BATCH_SIZE if quick else BATCH_SIZE
  measurements = {}
  for model in models:
    say(f"bench {model} (train and inference steps) ...")
    measurements[model] = measure(model, workdir, image_shape, num_classes, seconds,
                                  bench_batch_size, num_devices)
  plan = plan_runs(models, budget, workdir, measurements, section)
  rows = []
  for model in models:
    runs, errors = [], []
    for seed in range(seeds):
      run_dir = os.path.join(workdir, "runs", f"{model}-seed{seed}")
      steps = f", {plan[model]['max_steps']} steps" if plan[model]["max_steps"] else ""
      say(f"train {model} seed {seed}: {plan[model]['epochs']:g} epoch(s){steps} in "
          f"{run_dir} ...")
      start = time.perf_counter()
      try:
        config = run_config(model, section, plan[model]["epochs"], seed, num_devices,
                            plan[model]["max_steps"])
        runs.append(train_run(config, run_dir))
      except CnnJaxError as e:  # e.g. a diverged run: recorded, the others still run
        errors.append(f"seed {seed}: {e}")
        say(f"  failed: {e}")
        continue
      say(f"  test accuracy {100 * runs[-1]['test_accuracy']:.2f}% "
          f"({time.perf_counter() - start:.0f} s in this call)")
    rows.append(table_row(model, measurements[model], runs, errors))
  device = measurements[models[0]]["train"]["device"]
  device_text = f"{device['kind']} ({device['host_cpu']}, {device['host_cores']} cores)"
  budget_text = f"{budget[1]:g} {budget[0]}" + (
      " of training steps (from the benchmarked step time)" if budget[0] == "minutes" else "")
  tables = write_tables(rows, workdir, device_text, bench_batch_size, budget_text)
  data_text = f"{dataset}{' (quick subset)' if quick else ''}"
  plots = {name: plot_accuracy(rows, os.path.join(workdir, f"accuracy_vs_{name}.png"), key,
                               label, log_x, f"Test accuracy vs {label.split(' (')[0]}: "
                               f"{data_text}")
           for name, (key, label, log_x) in PLOTS.items()}
  return {"rows": rows, "tables": tables, "plots": plots, "recipes": recipes}


def _data_shape(section: ml_collections.ConfigDict) -> tuple[tuple[int, int, int], int]:
  """``(image_shape, num_classes)`` of the runs' data (for the benchmarks' synthetic data)."""
  if section.name == "cifar10_jpeg":
    return (32, 32, 3), 10
  channels = 1  # the presets are grey digits and clothes
  return (section.image_size, section.image_size, channels), 10
