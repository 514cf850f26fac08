"""The five-step transfer-learning study of the notes (Chollet, Deep Learning with Python,
1st ed., ch. 5: cats vs dogs with VGG16), on CIFAR-10's cats and dogs.

ImageNet weights cannot be downloaded here, so the study brings its own source task: the
base (a VGG-style ``simple_cnn``: 3x3 Conv-BN-ReLU blocks, each followed by a 2x2 max pool)
is pretrained on the eight CIFAR-10 classes other than cat and dog. Then, each step its own
resumable run under ``--workdir``:

1. ``1_scratch``: the same network from scratch on the 2,000 training images;
2. ``2_augment``: + augmentation (flips, translations);
3. ``3_features``: the frozen pretrained base run once over every split (cached features,
   :mod:`cnn_jax.transfer.features`), a new dense head trained on them;
4. ``4_frozen_augment``: the pretrained base frozen inside the network (no gradient, batch
   norm in inference mode), a new head trained end to end with augmentation;
5. ``5_finetune``: from step 4, the last stage unfrozen next to the head at a low rate.

``run_study(workdir)`` (``python -m cnn_jax study transfer --workdir runs/transfer``) trains
what is not finished yet and writes ``study.md``, ``study.json`` and ``study.png``: per step
the trainable and frozen parameters, epochs, training time and validation and test accuracy.
The published numbers (150x150 images, ImageNet VGG16) are about 71, 82, 90, 96 and 97%.

The experiment files ``experiments/cifar_catdog_*.py`` are these configs; the variant
``"digits"`` is a seconds-long version (scikit-learn digits 0-7 -> 8 vs 9) for tests.
"""

import json
import os
from typing import Callable

import jax
import ml_collections
import numpy as np
from flax import traverse_util

from cnn_jax import experiment
from cnn_jax.config import atomic_write, train_section
from cnn_jax.data.augment import augment_config
from cnn_jax.data.presets import dataset_preset
from cnn_jax.errors import ConfigError
from cnn_jax.tasks.classification import build_model
from cnn_jax.transfer import features  # noqa: F401  (registers feature_classification)
from cnn_jax.train.logging import read_history
from cnn_jax.transfer.param_groups import frozen_paths

PRETRAIN = "0_pretrain"
STEPS = ("1_scratch", "2_augment", "3_features", "4_frozen_augment", "5_finetune")
PUBLISHED = {"1_scratch": 0.71, "2_augment": 0.82, "3_features": 0.90, "4_frozen_augment": 0.96,
             "5_finetune": 0.97}  # Chollet's numbers, for the plot
VARIANTS = ("", "digits")
HEAD = ("head",)


def _check_variant(variant: str) -> None:
  if variant not in VARIANTS:
    raise ConfigError(f"Unknown study variant {variant!r}; choose one of "
                      f"{', '.join(repr(v) for v in VARIANTS)}.")


def _base(variant: str, dataset: ml_collections.ConfigDict, epochs: int,
          batch_size: int) -> ml_collections.ConfigDict:
  """The common config: the VGG-style base with a 256-unit head (16 units on digits)."""
  digits = variant == "digits"
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = dataset
  config.augment = augment_config()
  config.model = ml_collections.ConfigDict({
      "name": "simple_cnn", "base_channels": 8 if digits else 32, "num_blocks": 2 if digits else 3,
      "convs_per_block": 1, "dense_units": (16,) if digits else (256,), "dropout_rate": 0.5,
      "head": "flatten", "init_from": "", "init_skip": (), "init_checkpoint": "best"})
  config.optimizer = ml_collections.ConfigDict({
      "name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True,
      "weight_decay": 5e-4, "param_groups": ()})
  config.schedule = ml_collections.ConfigDict({"name": "warmup_cosine", "warmup_epochs": 1})
  config.train = train_section(epochs=epochs, batch_size=batch_size, eval_batch_size=500,
                               log_every_steps=10)
  return config


def _augmented(config: ml_collections.ConfigDict, variant: str) -> ml_collections.ConfigDict:
  config.augment = (augment_config(crop_padding=1) if variant == "digits"
                    else augment_config(flip=True, crop_padding=4, crop_mode="reflect"))
  return config


def pretrain_config(variant: str = "") -> ml_collections.ConfigDict:
  """The source task: the base trained on CIFAR-10 without cats and dogs (digits 0-7)."""
  _check_variant(variant)
  if variant == "digits":
    dataset = dataset_preset("digits", image_size=8, classes=tuple(range(8)))
    return _base(variant, dataset, epochs=2, batch_size=64)
  return _augmented(_base(variant, dataset_preset("cifar10_no_catdog"), epochs=4,
                          batch_size=128), variant)


def step_config(step: str, variant: str = "",
                workdir: str = "runs/transfer") -> ml_collections.ConfigDict:
  """The config of ``step`` (one of :data:`STEPS`) of the study in ``workdir``, whose
  pretraining run is ``workdir/0_pretrain`` (and step 5 starts from ``workdir/4_...``)."""
  _check_variant(variant)
  if step not in STEPS:
    raise ConfigError(f"Unknown study step {step!r}; the steps: {', '.join(STEPS)}.")
  digits = variant == "digits"
  dataset = (dataset_preset("digits", image_size=8, classes=(8, 9)) if digits
             else dataset_preset("cifar10_catdog"))
  epochs = {"1_scratch": 12, "2_augment": 12, "3_features": 20, "4_frozen_augment": 10,
            "5_finetune": 8}[step]
  config = _base(variant, dataset, epochs=1 if digits else epochs, batch_size=32 if digits else 64)
  config.optimizer.name, config.optimizer.learning_rate = "adam", 1e-3  # 2,000 images: Adam
  config.optimizer.weight_decay = 0.0
  pretrained = os.path.join(workdir, PRETRAIN)
  if step == "2_augment":
    _augmented(config, variant)
  elif step == "3_features":
    config.task = ml_collections.ConfigDict({"name": "feature_classification",
                                             "base_run": pretrained, "checkpoint": "best",
                                             "layer": "", "cache_dir": ""})
    config.model.num_blocks = 0  # the head alone: flatten, dense, dropout, output
  elif step == "4_frozen_augment":
    _augmented(config, variant)
    config.model.init_from = pretrained
    config.model.init_skip = HEAD
    config.optimizer.param_groups = (("head", 1.0), ("*", "frozen"))
  elif step == "5_finetune":
    _augmented(config, variant)
    config.model.init_from = os.path.join(workdir, "4_frozen_augment")
    config.optimizer.learning_rate = 1e-4  # a tenth: small steps on the pretrained stage
    config.optimizer.param_groups = (("head", 1.0), ("stage-1", 1.0), ("*", "frozen"))
  return config


def parameter_counts(config: ml_collections.ConfigDict, image_shape: tuple[int, ...],
                     num_classes: int) -> tuple[int, int]:
  """``(trainable, frozen)`` parameters of a step's network (abstract init, no weights)."""
  model = build_model(config, num_classes=num_classes)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0),
                          jax.ShapeDtypeStruct((1, *image_shape), np.float32))["params"]
  frozen = frozen_paths(shapes, config.optimizer.get("param_groups"), config.model.name)
  sizes = {p: int(np.prod(v.shape)) for p, v in traverse_util.flatten_dict(shapes).items()}
  return (sum(n for p, n in sizes.items() if p not in frozen),
          sum(n for p, n in sizes.items() if p in frozen))


ROW_FILE = "study_row.json"


def run_step(name: str, config: ml_collections.ConfigDict, step_dir: str,
             log: Callable[[str], None] = print) -> dict:
  """Trains (or resumes) one step and returns its table row; a finished step's row is read
  back from ``step_dir/study_row.json`` without touching the run."""
  row_path = os.path.join(step_dir, ROW_FILE)
  if os.path.exists(row_path):
    with open(row_path) as f:
      log(f"{name}: finished before, {step_dir}")
      return json.load(f)
  log(f"{name}: training in {step_dir}")
  results = experiment.train(config, step_dir)
  task, history = results["task"], read_history(step_dir)
  trainable, frozen = parameter_counts(config, task.image_shape, len(task.class_names))
  row = {"step": name, "trainable_params": trainable, "frozen_params": frozen,
         "epochs": config.train.epochs,
         "train_time_s": round(sum(r["epoch_time_s"] for r in history), 1),
         "val_accuracy": history[-1]["val_accuracy"], "test_accuracy": results["test"]["accuracy"]}
  if name == "3_features":  # the base ran once per split, outside the training epochs
    base = pretrain_config(_variant_of(config))
    base.optimizer.param_groups = (("head", 1.0), ("*", "frozen"))
    row["frozen_params"] = parameter_counts(base, task.images["train"].shape[1:],
                                            base_classes(base))[1]
    row["features_s"] = round(sum(e.seconds for e in task.extraction.values()), 2)
    row["features_from_cache"] = all(e.from_cache for e in task.extraction.values())
  with atomic_write(row_path) as f:
    json.dump(row, f, indent=1)
  return row


def _variant_of(config: ml_collections.ConfigDict) -> str:
  return "digits" if config.dataset.name == "digits" else ""


def base_classes(config: ml_collections.ConfigDict) -> int:
  """The number of classes the pretraining run learns."""
  return len(config.dataset.classes)


def run_study(workdir: str, variant: str = "", progress: bool = True,
              log: Callable[[str], None] = print) -> list[dict]:
  """Pretrains the base and trains the five steps in ``workdir`` (skipping finished ones;
  ``progress``: the runs' progress bars, ``train.progress``); writes ``study.md``,
  ``study.json`` and ``study.png`` there and returns the rows."""
  _check_variant(variant)

  def run(name: str, config: ml_collections.ConfigDict) -> dict:
    config.train.progress = progress
    return run_step(name, config, os.path.join(workdir, name), log)

  pretrain = run(PRETRAIN, pretrain_config(variant))
  log(f"{PRETRAIN}: test accuracy {pretrain['test_accuracy']:.4f} on "
      f"{base_classes(pretrain_config(variant))} classes")
  rows = [run(name, step_config(name, variant, workdir)) for name in STEPS]
  with atomic_write(os.path.join(workdir, "study.json")) as f:
    json.dump({"pretrain": pretrain, "steps": rows, "published": PUBLISHED}, f, indent=1)
  with atomic_write(os.path.join(workdir, "study.md")) as f:
    f.write(format_table(rows) + "\n")
  title = ("digits 8 vs 9 (pretrained on 0-7)" if variant == "digits"
           else "CIFAR-10 cats vs dogs (2,000 training images)")
  plot_study(rows, os.path.join(workdir, "study.png"), f"Transfer learning, {title}")
  return rows


def format_table(rows: list[dict]) -> str:
  """The study as a markdown table, one row per step."""
  lines = ["| step | trainable params | frozen params | epochs | train time (s) | val accuracy "
           "| test accuracy | published |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    lines.append(f"| {r['step']} | {r['trainable_params']:,} | {r['frozen_params']:,} | "
                 f"{r['epochs']} | {r['train_time_s']:.0f} | {r['val_accuracy']:.3f} | "
                 f"{r['test_accuracy']:.3f} | {PUBLISHED[r['step']]:.2f} |")
  return "\n".join(lines)


def plot_study(rows: list[dict], path: str, title: str) -> str:
  """Validation and test accuracy per step as bars, the published numbers as markers."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  x = np.arange(len(rows))
  fig, ax = plt.subplots(figsize=(7.5, 4))
  ax.bar(x - 0.2, [r["val_accuracy"] for r in rows], 0.4, label="validation")
  ax.bar(x + 0.2, [r["test_accuracy"] for r in rows], 0.4, label="test")
  ax.plot(x, [PUBLISHED[r["step"]] for r in rows], "k_", markersize=28, mew=2,
          label="published (150x150, ImageNet VGG16)")
  ax.set_xticks(x, [r["step"].replace("_", " ", 1) for r in rows], fontsize=8)
  ax.set_ylim(0.5, 1.0)
  ax.set_ylabel("accuracy")
  ax.set_title(title)
  ax.legend(loc="upper left", fontsize=8)
  ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
