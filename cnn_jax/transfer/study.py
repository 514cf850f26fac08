"""The five-step transfer-learning study of the notes (Chollet, Deep Learning with Python,
1st ed., ch. 5: cats vs dogs with VGG16), on CIFAR-10's cats and dogs or a folder of images.

ImageNet weights cannot be downloaded here, so the study brings its own source task: the
base is pretrained on the eight CIFAR-10 classes other than cat and dog (``0_pretrain``).
Two bases (:attr:`Setup.base`): ``"vgg"``, a VGG-style ``simple_cnn`` (3x3 Conv-BN-ReLU
blocks of 32, 64, 128 channels, each followed by a 2x2 max pool; a 256-unit dense head), and
``"resnet"``, ``cifar_resnet20`` (He et al.'s CIFAR ResNet-20, its head one dense layer on
the pooled features). Then, each step its own resumable run under ``--workdir``:

1. ``1_scratch``: the base's network from scratch on the 2,000 training images;
2. ``2_augment``: + augmentation (flips, translations);
3. ``3_features``: the frozen pretrained base run once over every split (cached features,
   :mod:`cnn_jax.transfer.features`), a new dense head trained on them;
4. ``4_frozen_augment``: the pretrained base frozen inside the network (no gradient, batch
   norm in inference mode), a new head trained end to end with augmentation;
5. ``5_finetune``: from step 4, the last stage unfrozen next to the head at a low rate.

``Setup.images`` replaces CIFAR by a folder with one subfolder per class (``cats/``
``dogs/``, or the notes' first example's ``male/`` ``female/``), split half for training
and a quarter each for validation and test. ``Setup.weights``, a Keras VGG16 file with or
without its classifier (``VGG16(weights="imagenet", include_top=False).save_weights(...)``,
as the notes, or Keras's own ``vgg16_weights_tf_dim_ordering_tf_kernels[_notop].h5``: the
classifier is replaced anyway), makes steps 3-5 use ImageNet's VGG16
through :func:`cnn_jax.models.convert.load_pretrained` as the notes do (150x150 images by
default; Caffe's preprocessing: BGR, mean subtracted), with no pretraining run; steps 1-2
then train a four-block ``simple_cnn``.

``run_study(workdir, setup, replicates=K)`` (``python -m cnn_jax study transfer --workdir
runs/transfer [--base resnet] [--images DIR] [--weights VGG16.h5] [--replicates K]``)
trains what is not finished yet and writes ``study.md``, ``study.json`` and ``study.png``:
per step the trainable and frozen parameters, epochs, training time and validation and
test accuracy; with K replicates (runs ``STEP_r1`` .. with other seeds and another
train/val/test split, from the one pretrained base) their means, the test accuracy's
standard deviation and step 5's gain over step 1 paired by replicate. The published numbers
(150x150 images, ImageNet VGG16) are about 71, 82, 90, 96 and 97%.

The experiment files ``experiments/cifar_catdog_*.py`` are the CIFAR configs with the VGG
base; their variant ``"digits"`` is a seconds-long version (scikit-learn digits 0-7 -> 8 vs
9) for tests.
"""

import dataclasses
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
# Training epochs per step. As in the notes (30 epochs without augmentation, 100 with it),
# the augmented network trains longer: augmentation pays off only once the plain network
# would overfit.
EPOCHS = {"1_scratch": 12, "2_augment": 30, "3_features": 20, "4_frozen_augment": 20,
          "5_finetune": 80}
VARIANTS = ("", "digits")
BASES = ("vgg", "resnet")
HEAD = ("head",)
SETUP_FILE = "study_setup.json"
# Keras's VGG16 preprocessing ("caffe": x * 255 minus ImageNet's mean, no scaling) as
# (mean, std) on the [0, 1] scale, in RGB order: the first convolution's input channels are
# reversed from BGR when the file is read (model.init_reverse_channels).
CAFFE_NORMALIZATION = ((123.68 / 255, 116.779 / 255, 103.939 / 255), (1 / 255,) * 3)


@dataclasses.dataclass(frozen=True)
class Setup:
  """What a study runs on (see the module docstring).

  Attributes:
    variant: ``""`` (CIFAR-10 at the notes' sizes) or ``"digits"`` (seconds long, 8x8).
    base: the pretrained base, ``"vgg"`` or ``"resnet"``; steps 1-2 train its network.
    images: a folder of class subfolders to use instead of CIFAR cats vs dogs.
    weights: a Keras VGG16 ``.h5`` (with or without its classifier): steps 3-5 use it as
      the base.
    image_size: the folder's images are resized to it (0: 150 with ``weights``, as the
      notes; else the pretraining images' size, 32, or 8 for digits).
  """
  variant: str = ""
  base: str = "vgg"
  images: str = ""
  weights: str = ""
  image_size: int = 0

  def check(self) -> "Setup":
    """``self``; an unknown variant or base, or weights that cannot be used, raise."""
    for field, value, known in (("variant", self.variant, VARIANTS), ("base", self.base, BASES)):
      if value not in known:
        raise ConfigError(f"Unknown study {field} {value!r}; choose one of "
                          f"{', '.join(repr(v) for v in known)}.")
    if self.weights:
      if self.variant == "digits":
        raise ConfigError("--weights (ImageNet VGG16) needs images of at least 32x32: leave "
                          "out --variant digits.")
      if not self.weights.endswith(".h5"):
        raise ConfigError(f"--weights {self.weights!r}: give Keras's VGG16 weights, a .h5 "
                          "file (with or without the classifier).")
    return self

  @property
  def digits(self) -> bool:
    return self.variant == "digits"

  def folder_size(self) -> int:
    return self.image_size or (150 if self.weights else 8 if self.digits else 32)


def _base(setup: Setup, dataset: ml_collections.ConfigDict, epochs: int,
          batch_size: int) -> ml_collections.ConfigDict:
  """The common config: the base's network (VGG-style: a 256-unit head, 16 on digits)."""
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = dataset
  config.augment = augment_config()
  init = {"init_from": "", "init_skip": (), "init_checkpoint": "best"}
  if setup.base == "resnet":
    config.model = ml_collections.ConfigDict({"name": "cifar_resnet20", **init})
  else:
    config.model = ml_collections.ConfigDict({
        "name": "simple_cnn", "base_channels": 8 if setup.digits else 32,
        "num_blocks": 2 if setup.digits else 3, "convs_per_block": 1,
        "dense_units": (16,) if setup.digits else (256,), "dropout_rate": 0.5,
        "head": "flatten", **init})
  config.optimizer = ml_collections.ConfigDict({
      "name": "sgd", "learning_rate": 0.05, "momentum": 0.9, "nesterov": True,
      "weight_decay": 5e-4, "param_groups": ()})
  config.schedule = ml_collections.ConfigDict({"name": "warmup_cosine", "warmup_epochs": 1})
  config.train = train_section(epochs=epochs, batch_size=batch_size, eval_batch_size=500,
                               log_every_steps=10)
  return config


def _augmented(config: ml_collections.ConfigDict, setup: Setup) -> ml_collections.ConfigDict:
  config.augment = (augment_config(crop_padding=1) if setup.digits
                    else augment_config(flip=True, crop_padding=4, crop_mode="reflect"))
  return config


def _imagenet_vgg16(config: ml_collections.ConfigDict, setup: Setup) -> None:
  """Steps 4-5 with Keras's ImageNet VGG16 as the base: its convolutions from the file, a
  new 256-256 head (the notes' has one 256-unit layer), Caffe's input normalization."""
  config.model = ml_collections.ConfigDict({
      "name": "vgg16", "dense_units": 256, "dropout_rate": 0.5, "init_from": setup.weights,
      "init_options": {}, "init_skip": HEAD, "init_checkpoint": "best",
      "init_reverse_channels": True})
  config.dataset.mean, config.dataset.std = CAFFE_NORMALIZATION


def pretrain_config(variant: str = "", base: str = "vgg") -> ml_collections.ConfigDict:
  """The source task: the base trained on CIFAR-10 without cats and dogs (digits 0-7)."""
  setup = Setup(variant, base).check()
  if setup.digits:
    dataset = dataset_preset("digits", image_size=8, classes=tuple(range(8)))
    return _base(setup, dataset, epochs=2, batch_size=64)
  return _augmented(_base(setup, dataset_preset("cifar10_no_catdog"), epochs=35,
                          batch_size=128), setup)


def _target_data(setup: Setup) -> ml_collections.ConfigDict:
  """The study's dataset section: cats vs dogs (8 vs 9 on digits) or ``setup.images``."""
  if setup.images:
    return dataset_preset("image_folder", directory=setup.images,
                          image_size=setup.folder_size(), channels=1 if setup.digits else 3)
  if setup.digits:
    return dataset_preset("digits", image_size=8, classes=(8, 9))
  return dataset_preset("cifar10_catdog")


def run_name(step: str, replicate: int = 0) -> str:
  """The run directory of a step's replicate: ``5_finetune``, ``5_finetune_r1``, ..."""
  return step if replicate == 0 else f"{step}_r{replicate}"


def step_config(step: str, setup: Setup = Setup(), workdir: str = "runs/transfer",
                replicate: int = 0) -> ml_collections.ConfigDict:
  """The config of ``step`` (one of :data:`STEPS`) of the study in ``workdir``, whose
  pretraining run is ``workdir/0_pretrain`` (and step 5 starts from ``workdir/4_...``);
  ``replicate`` r > 0: the same step with other seeds and split r (step 5 from step 4's
  replicate r)."""
  setup.check()
  if step not in STEPS:
    raise ConfigError(f"Unknown study step {step!r}; the steps: {', '.join(STEPS)}.")
  config = _base(setup, _target_data(setup), epochs=1 if setup.digits else EPOCHS[step],
                 batch_size=32 if setup.digits else 64)
  # a seed per step and replicate (the pretraining has 0): step 5 would otherwise replay
  # step 4's batches, augmentations and dropout masks (cnn_jax.transfer.init_from); one
  # split per replicate, the same images for its five steps (step 5 must not be tested
  # on images step 4 trained on)
  config.seed = STEPS.index(step) + 1 + 10 * replicate
  config.dataset.split_seed = replicate
  config.optimizer.name, config.optimizer.learning_rate = "adam", 1e-3  # 2,000 images: Adam
  config.optimizer.weight_decay = 0.0
  pretrained = os.path.join(workdir, PRETRAIN)
  if setup.weights and step in ("1_scratch", "2_augment"):
    config.model.num_blocks = 4  # the notes' four blocks for 150x150 images
  if step == "2_augment":
    _augmented(config, setup)
  elif step == "3_features":
    config.task = ml_collections.ConfigDict({"name": "feature_classification",
                                             "base_run": pretrained, "checkpoint": "best",
                                             "layer": "", "cache_dir": ""})
    if setup.weights:
      config.task.update({"base_run": "", "base_weights": setup.weights, "base_model": "vgg16",
                          "base_reverse_channels": True})
      config.dataset.mean, config.dataset.std = CAFFE_NORMALIZATION
    # the head alone: flatten, dense, dropout, output
    config.model = ml_collections.ConfigDict({
        "name": "simple_cnn", "num_blocks": 0, "dense_units": (16,) if setup.digits else (256,),
        "dropout_rate": 0.5, "head": "flatten"})
  elif step == "4_frozen_augment":
    _augmented(config, setup)
    if setup.weights:
      _imagenet_vgg16(config, setup)
    else:
      config.model.init_from = pretrained
      config.model.init_skip = HEAD
    config.optimizer.param_groups = (("head", 1.0), ("*", "frozen"))
  elif step == "5_finetune":
    _augmented(config, setup)
    if setup.weights:
      _imagenet_vgg16(config, setup)
      config.model.init_skip = ()
    config.model.init_from = os.path.join(workdir, run_name("4_frozen_augment", replicate))
    # smaller steps on the pretrained stage: 3e-4 against step 4's 1e-3, for four times as
    # many epochs (1e-4 for 20 reached 0.749 validation accuracy, 1e-3 0.776, 3e-4 x 40
    # 0.792, from the 20-epoch base; from the 35-epoch base, 3 replicates: 3e-4 x 40 0.792,
    # x 80 0.796; ImageNet's VGG16: 1e-5, as the notes; see RESULTS.md §10)
    config.optimizer.learning_rate = 1e-5 if setup.weights else 3e-4
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
             log: Callable[[str], None] = print,
             base_config: ml_collections.ConfigDict | None = None) -> dict:
  """Trains (or resumes) one step and returns its table row; a finished step's row is read
  back from ``step_dir/study_row.json`` without touching the run. ``base_config``: for the
  feature step, a network whose frozen part is the base (step 4's), to count the base's
  parameters."""
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
  if base_config is not None:  # the base ran once per split, outside the training epochs
    row["frozen_params"] = parameter_counts(base_config, task.images["train"].shape[1:],
                                            len(task.class_names))[1]
    row["features_s"] = round(sum(e.seconds for e in task.extraction.values()), 2)
    row["features_from_cache"] = all(e.from_cache for e in task.extraction.values())
  with atomic_write(row_path) as f:
    json.dump(row, f, indent=1)
  return row


def check_workdir(workdir: str, setup: Setup) -> None:
  """Records ``setup`` in ``workdir/study_setup.json``; a workdir holding a study of another
  setup raises (its runs would be mixed with the new ones)."""
  path = os.path.join(workdir, SETUP_FILE)
  wanted = dataclasses.asdict(setup)
  if os.path.exists(path):
    with open(path) as f:
      recorded = json.load(f)
    if recorded != wanted:
      differ = ", ".join(f"{k}={recorded.get(k)!r}" for k in wanted if recorded.get(k) != wanted[k])
      raise ConfigError(f"{workdir} holds a study with {differ}: give another --workdir, or "
                        "the same options as before.")
    return
  os.makedirs(workdir, exist_ok=True)
  with atomic_write(path) as f:
    json.dump(wanted, f, indent=1)


def run_study(workdir: str, setup: Setup = Setup(), progress: bool = True,
              log: Callable[[str], None] = print, replicates: int = 1) -> list[dict]:
  """Pretrains the base (unless ``setup.weights``) and trains the five steps in ``workdir``
  (skipping finished ones; ``progress``: the runs' progress bars, ``train.progress``),
  each ``replicates`` times with other seeds and splits (the pretraining runs once); writes
  ``study.md``, ``study.json`` and ``study.png`` there and returns the per-step summary
  (:func:`summarize`)."""
  if replicates < 1:
    raise ConfigError(f"--replicates must be at least 1, got {replicates}.")
  setup.check()
  if setup.weights and not os.path.isfile(setup.weights):
    raise ConfigError(f"--weights {setup.weights!r}: no such file.")
  check_workdir(workdir, setup)

  def run(name: str, config: ml_collections.ConfigDict, **kw) -> dict:
    config.train.progress = progress
    return run_step(name, config, os.path.join(workdir, name), log, **kw)

  pretrain = None
  if not setup.weights:
    config = pretrain_config(setup.variant, setup.base)
    pretrain = run(PRETRAIN, config)
    log(f"{PRETRAIN}: test accuracy {pretrain['test_accuracy']:.4f} on "
        f"{len(config.dataset.classes)} classes")
  frozen_base = step_config("4_frozen_augment", setup, workdir)
  rows = [{**run(run_name(step, r), step_config(step, setup, workdir, r),
                 base_config=frozen_base if step == "3_features" else None),
           "step": step, "replicate": r}
          for r in range(replicates) for step in STEPS]
  summary = summarize(rows)
  with atomic_write(os.path.join(workdir, "study.json")) as f:
    json.dump({"setup": dataclasses.asdict(setup), "pretrain": pretrain, "steps": summary,
               "runs": rows, "published": PUBLISHED}, f, indent=1)
  with atomic_write(os.path.join(workdir, "study.md")) as f:
    f.write(format_table(summary) + "\n")
  plot_study(summary, os.path.join(workdir, "study.png"),
             f"Transfer learning: {describe(setup)}")
  return summary


def summarize(rows: list[dict]) -> list[dict]:
  """One row per step from its replicates' rows: the first one's parameter counts and
  epochs; the means of training time and accuracies; ``test_accuracies`` (by replicate),
  ``test_accuracy_std`` (ddof 1; 0 for one replicate) and ``gain_over_first`` (mean and
  standard deviation of the test accuracy minus step 1's, paired by replicate)."""
  first = {r["replicate"]: r["test_accuracy"] for r in rows if r["step"] == STEPS[0]}
  summary = []
  for step in STEPS:
    runs = [r for r in rows if r["step"] == step]
    if not runs:
      continue
    tests = [r["test_accuracy"] for r in runs]
    gains = [r["test_accuracy"] - first[r["replicate"]] for r in runs if r["replicate"] in first]
    summary.append({**{k: v for k, v in runs[0].items() if k != "replicate"},
                    "replicates": len(runs),
                    "train_time_s": round(float(np.mean([r["train_time_s"] for r in runs])), 1),
                    "val_accuracy": float(np.mean([r["val_accuracy"] for r in runs])),
                    "test_accuracy": float(np.mean(tests)), "test_accuracies": tests,
                    "test_accuracy_std": _std(tests),
                    "gain_over_first": (float(np.mean(gains)), _std(gains)) if gains else None})
  return summary


def _std(values: list[float]) -> float:
  return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def describe(setup: Setup) -> str:
  """What the study ran on (two lines), for the plot."""
  data = (f"{os.path.basename(os.path.normpath(setup.images))} ({setup.folder_size()}px)"
          if setup.images else "digits 8 vs 9" if setup.digits
          else "CIFAR-10 cats vs dogs (2,000 training images)")
  base = ("ImageNet VGG16" if setup.weights else
          f"{setup.base} base pretrained on {'0-7' if setup.digits else 'the 8 other classes'}")
  return f"{data}\n{base}"


def format_table(summary: list[dict]) -> str:
  """The study as a markdown table, one row per step (means over replicates, with the test
  accuracy's standard deviation when there are several), and step 5's gain over step 1."""
  n = max(r["replicates"] for r in summary)
  spread = f" (mean ± sd of {n} seeds)" if n > 1 else ""
  lines = ["| step | trainable params | frozen params | epochs | train time (s) | val accuracy "
           f"| test accuracy{spread} | published |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
  for r in summary:
    test = f"{r['test_accuracy']:.3f}" + (f" ± {r['test_accuracy_std']:.3f}" if n > 1 else "")
    lines.append(f"| {r['step']} | {r['trainable_params']:,} | {r['frozen_params']:,} | "
                 f"{r['epochs']} | {r['train_time_s']:.0f} | {r['val_accuracy']:.3f} | "
                 f"{test} | {PUBLISHED[r['step']]:.2f} |")
  last = summary[-1]
  if last["gain_over_first"] is not None and last["step"] != STEPS[0]:
    mean, sd = last["gain_over_first"]
    lines.append(f"\n{last['step']} minus {STEPS[0]}, test accuracy: {100 * mean:+.1f} points"
                 + (f" (sd {100 * sd:.1f} over {n} paired seeds)" if n > 1 else ""))
  return "\n".join(lines)


def plot_study(rows: list[dict], path: str, title: str) -> str:
  """Validation and test accuracy per step as bars (means; each replicate's test accuracy a
  dot), the published numbers as markers."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  x = np.arange(len(rows))
  fig, ax = plt.subplots(figsize=(7.5, 4))
  ax.bar(x - 0.2, [r["val_accuracy"] for r in rows], 0.4, label="validation")
  ax.bar(x + 0.2, [r["test_accuracy"] for r in rows], 0.4, label="test")
  if max(r["replicates"] for r in rows) > 1:
    for i, r in enumerate(rows):
      ax.plot([x[i] + 0.2] * r["replicates"], r["test_accuracies"], "k.", markersize=4)
  ax.plot(x, [PUBLISHED[r["step"]] for r in rows], "k_", markersize=28, mew=2,
          label="published (150x150, ImageNet VGG16)")
  ax.set_xticks(x, [r["step"].replace("_", " ", 1) for r in rows], fontsize=8)
  ax.set_ylim(0.5, 1.0)
  ax.set_ylabel("accuracy")
  ax.set_title(title, fontsize=10)
  ax.legend(loc="upper left", fontsize=8)
  ax.grid(axis="y", alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return path
