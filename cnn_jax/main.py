"""Command line: ``python -m cnn_jax COMMAND ...``. Parsing only; work happens in the library.

Commands (``python -m cnn_jax COMMAND --help`` lists each one's options and defaults):

* ``train --config FILE --workdir DIR [--config.key=value ...]``
* ``show-data --config FILE [--out PNG] [--config.key=value ...]``
* ``eval --workdir DIR [--checkpoint best|latest|STEP] [--split test|val|train]``
* ``predict --workdir DIR --image FILE [--out PNG] [--checkpoint best|latest|STEP]``
* ``sample --workdir DIR [--num N] [--out PNG] [--checkpoint best|latest|STEP]``
* ``search --config FILE --study-dir DIR [--sampler grid|random|tpe|gp] [--trials N]
  [--pruner none|median|halving|hyperband] [--storage URL|journal] [--workers K]``
* ``search-report --study-dir DIR``
* ``models [PATTERN]``
* ``summary MODEL [--input-size N] [--channels C] [--param-groups RULES]``
* ``filters [--image FILE] [--padding zeros|replicate|reflect] [--out PNG]``
* ``study transfer --workdir DIR [--variant digits] [--base vgg|resnet] [--images DIR]
  [--weights VGG16.h5] [--image-size N] [--replicates K] [--no-progress]``
* ``bench --models a,b [--batch-size N] [--image-size S] [--mode train|infer] [--seconds T]
  [--json | --out FILE]``
* ``compare [--models a,b] [--budget epochs|minutes N] [--dataset cifar10] [--seeds K]
  [--quick] [--workdir DIR]``
* ``features --workdir DIR --image FILE [--out PNG] [--checkpoint best|latest|STEP]``
"""

import argparse
import ast
import logging
import os
import sys

from cnn_jax.errors import CnnJaxError


def _split_overrides(argv: list[str]) -> tuple[list[str], list[str]]:
  """Separates ``--config.key=value`` (or ``--config.key value``) from other arguments."""
  rest, overrides, i = [], [], 0
  while i < len(argv):
    arg = argv[i]
    if arg.startswith("--config."):
      body = arg[len("--config."):]
      if "=" not in body:
        if i + 1 >= len(argv):
          raise CnnJaxError(f"{arg} needs a value: {arg}=VALUE")
        body, i = f"{body}={argv[i + 1]}", i + 1
      overrides.append(body)
    else:
      rest.append(arg)
    i += 1
  return rest, overrides


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter,
                    argparse.RawDescriptionHelpFormatter):
  """Shows each option's default (unless it has none) and keeps the epilog's line breaks."""

  def _get_help_string(self, action: argparse.Action) -> str:
    if action.required or action.default is None or action.default is False:
      return action.help
    return super()._get_help_string(action)


OVERRIDES_EPILOG = """\
config overrides:
  --config.KEY=VALUE    set any key of the experiment's config (nested keys with dots), e.g.
                        --config.optimizer.learning_rate=3e-3 --config.train.epochs=20
                        (values are parsed as Python literals; a misspelled key fails at
                        once and names the closest keys)"""

# One line per command: the top-level help lists them, each command's help starts with its own.
COMMAND_HELP = {
    "train": "train an experiment (resumes if the workdir has checkpoints)",
    "show-data": "write a PNG grid of augmented training samples",
    "eval": "evaluate a checkpoint of a trained run: metrics, figures, report",
    "predict": "draw a trained run's prediction (mask or boxes) on your own image",
    "models": "list registered models with native input size and parameters",
    "summary": "per-layer table, parameters and GFLOPs of a model",
    "filters": "apply the classic 3x3 filters (blur, sharpen, edges) to a photo: a PNG grid",
    "bench": "time train or inference steps on synthetic data: a table, or JSON",
    "sample": "draw a grid of samples (or translations) from a trained GAN or CycleGAN",
    "study": "run a multi-run study: 'transfer' = the five-step cats-vs-dogs transfer study",
    "compare": "train and measure models under one budget: a table (md, JSON, CSV) and plots",
    "features": "draw a trained classifier's first-layer filters and an image's feature maps",
    "search": "hyperparameter search over the experiment's get_search_space() with optuna",
    "search-report": "a search's trial table, plots and best experiment file",
}
_NAME_WIDTH = max(map(len, COMMAND_HELP)) + 2


def build_parser() -> argparse.ArgumentParser:
  """The parser of every command (``--config.key=value`` overrides are split off before)."""
  parser = argparse.ArgumentParser(
      prog="python -m cnn_jax", usage="%(prog)s [-h] COMMAND ...", formatter_class=_HelpFormatter,
      description="Convolutional networks in JAX/Flax: train and evaluate experiments, "
                  "inspect and benchmark models.",
      epilog="commands:\n" + "".join(f"  {name:<{_NAME_WIDTH}}{text}\n"
                                      for name, text in COMMAND_HELP.items())
      + "\nRun 'python -m cnn_jax COMMAND --help' for the options of a command.")
  sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", prog=parser.prog,
                              help=argparse.SUPPRESS)  # listed in the epilog, one line each

  def command(name: str, epilog: str | None = None) -> argparse.ArgumentParser:
    text = COMMAND_HELP[name]
    return sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".",
                          epilog=epilog, formatter_class=_HelpFormatter)

  def add_checkpoint(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default="best", metavar="best|latest|STEP",
                   help="which checkpoint: the best, the latest or a step number")

  p = command("train", OVERRIDES_EPILOG)
  p.add_argument("--config", required=True, metavar="FILE",
                 help="experiment file defining get_config(), e.g. experiments/digits_lenet5.py")
  p.add_argument("--workdir", required=True, metavar="DIR",
                 help="run directory: config, logs, checkpoints, figures and the report")
  p.add_argument("--show-config", action="store_true", help="print the resolved config and exit")
  p.add_argument("--distributed", action="store_true",
                 help="multi-process run: join with jax.distributed.initialize() (auto-detects "
                      "SLURM/MPI/TPU, or uses --coordinator/--num-processes/--process-id)")
  p.add_argument("--coordinator", metavar="HOST:PORT",
                 help="address of process 0 (implies --distributed)")
  p.add_argument("--num-processes", type=int, help="number of processes (with --coordinator)")
  p.add_argument("--process-id", type=int, help="this process's index, 0 to N-1 "
                                                "(with --coordinator)")
  p = command("show-data", OVERRIDES_EPILOG)
  p.add_argument("--config", required=True, metavar="FILE",
                 help="experiment file whose data to show")
  p.add_argument("--out", default="data_samples.png", help="the PNG to write")
  p.add_argument("--num-images", type=int, default=24, help="samples in the grid")
  p.add_argument("--seed", type=int, default=0, help="seed of the samples and augmentations")
  p = command("eval")
  p.add_argument("--workdir", required=True, metavar="DIR",
                 help="run directory of a train command")
  add_checkpoint(p)
  p.add_argument("--split", default="test", choices=("test", "val", "train"),
                 help="the data split to evaluate")
  p = command("predict")
  p.add_argument("--workdir", required=True, metavar="DIR",
                 help="run directory of a segmentation or detection train command")
  p.add_argument("--image", required=True, metavar="FILE",
                 help="an image file (PNG, JPEG, ...), resized to the run's input size")
  p.add_argument("--out", default="prediction.png", help="the PNG to write")
  add_checkpoint(p)
  p = command("sample")
  p.add_argument("--workdir", required=True, metavar="DIR",
                 help="run directory of a gan or cyclegan train command")
  p.add_argument("--num", type=int, default=64, help="samples (or test images) to draw")
  p.add_argument("--out", default="grid.png", help="the PNG to write")
  add_checkpoint(p)
  p.add_argument("--seed", type=int, help="noise seed (default: the run's seed)")
  p = command("study")
  p.add_argument("study", choices=("transfer",), help="which study")
  p.add_argument("--workdir", required=True, metavar="DIR",
                 help="one run directory per step under it, plus study.md/.json/.png")
  p.add_argument("--variant", default="", choices=("", "digits"),
                 help="'' the CIFAR-10 study; 'digits' a seconds-long version on digits")
  p.add_argument("--base", default="vgg", choices=("vgg", "resnet"),
                 help="the base pretrained on CIFAR-10 without cats and dogs: VGG-style "
                      "simple_cnn or cifar_resnet20")
  p.add_argument("--images", default="", metavar="DIR",
                 help="your own folder of class subfolders (cats/ dogs/) instead of CIFAR")
  p.add_argument("--weights", default="", metavar="VGG16.h5",
                 help="Keras's ImageNet VGG16 (.h5, include_top or not) as the base of steps "
                      "3-5 instead of the pretraining run")
  p.add_argument("--image-size", type=int, default=0, metavar="N",
                 help="--images resized to NxN (default 150 with --weights, else 32)")
  p.add_argument("--replicates", type=int, default=1, metavar="K",
                 help="train every step K times with other seeds and splits (the pretraining "
                      "once); the table gives means and standard deviations")
  p.add_argument("--no-progress", action="store_true",
                 help="no progress bars (train.progress=false in every run), e.g. for logs")
  p = command("search", OVERRIDES_EPILOG)
  p.add_argument("--config", required=True, metavar="FILE",
                 help="experiment file defining get_config() and get_search_space(), e.g. "
                      "experiments/digits_search.py")
  p.add_argument("--study-dir", required=True, metavar="DIR",
                 help="the study: storage, one run directory per trial, table and plots")
  p.add_argument("--sampler", choices=("grid", "random", "tpe", "gp"), default="tpe",
                 help="optuna sampler choosing each trial's values")
  p.add_argument("--trials", type=int, default=20,
                 help="finished trials the study ends with (a rerun continues up to it)")
  p.add_argument("--pruner", choices=("none", "median", "halving", "hyperband"), default="none",
                 help="stop hopeless trials early from their per-epoch validation values")
  p.add_argument("--storage", metavar="URL|journal",
                 help="optuna storage: a database URL, 'journal' or a .log file (default: "
                      "sqlite in the study dir)")
  p.add_argument("--workers", type=int, default=1, help="processes running trials at once")
  p.add_argument("--seed", type=int, default=0, help="seed of the sampler")
  p.add_argument("--study-name", help="the study's name in the storage (default: the "
                                      "study dir's name)")
  p = command("search-report")
  p.add_argument("--study-dir", required=True, metavar="DIR",
                 help="the --study-dir of a search command")
  p.add_argument("--storage", metavar="URL|journal",
                 help="the search's storage, if not the one its search.json names")
  p = command("models")
  p.add_argument("pattern", nargs="?", default="*",
                 help="shell-style name pattern, e.g. 'resnet*'")
  p = command("summary")
  p.add_argument("model", help="a registered model (see the models command)")
  p.add_argument("--input-size", type=int,
                 help="image height and width (default: the model's native size)")
  p.add_argument("--channels", type=int, help="input channels (default: the model's native)")
  p.add_argument("--num-classes", type=int, help="classifier outputs (default: the model's)")
  p.add_argument("--depth", type=int, default=2, help="module nesting shown in the table")
  p.add_argument("--param-groups", metavar="RULES",
                 help="optimizer.param_groups rules to count frozen parameters apart, e.g. "
                      "\"(('stage-1', 1.0), ('head', 1.0), ('*', 'frozen'))\"")
  p = command("filters")
  p.add_argument("--image", metavar="FILE",
                 help="a JPEG or PNG (default: scikit-learn's bundled china.jpg)")
  p.add_argument("--padding", choices=("zeros", "replicate", "reflect"), default="zeros",
                 help="what the pixels added around the image hold")
  p.add_argument("--max-size", type=int, default=320,
                 help="the photo is shrunk to at most this many pixels on its longer side")
  p.add_argument("--out", default="filters.png", help="the PNG to write")
  p = command("bench")
  p.add_argument("--models", required=True, metavar="A,B,...", help="comma-separated model names")
  p.add_argument("--batch-size", type=int, default=128,
                 help="global batch, split over the devices")
  p.add_argument("--image-size", type=int,
                 help="image height and width (default: each model's native size)")
  p.add_argument("--channels", type=int, help="input channels (default: each model's native)")
  p.add_argument("--mode", choices=("train", "infer"), default="train",
                 help="train: forward, backward and SGD update; infer: forward only")
  p.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32",
                 help="compute dtype (parameters and logits stay float32)")
  p.add_argument("--seconds", type=float, default=10.0,
                 help="time budget of each model's timed rounds; sizes --steps")
  p.add_argument("--steps", type=int, help="steps per timed round (default: sized by --seconds)")
  p.add_argument("--repeats", type=int, default=5, help="timed rounds, for the median, min and max")
  p.add_argument("--warmup", type=int, default=2, help="untimed steps after compilation")
  p.add_argument("--num-devices", type=int, default=0, help="devices in the mesh; 0 means all")
  p.add_argument("--peak-tflops", type=float,
                 help="per-device peak TFLOP/s for the MFU (default: known GPUs only)")
  p.add_argument("--json", action="store_true",
                 help="print the results as JSON on stdout (the table goes to stderr)")
  p.add_argument("--out", help="also write the JSON results to this file")
  p = command("compare")
  p.add_argument("--models", metavar="A,B,...",
                 help="comma-separated model names (default: the seven case studies, lenet5, "
                      "alexnet_cifar, vgg11_bn_cifar, nin_cifar, googlenet_cifar, "
                      "cifar_resnet20, cifar_resnet56)")
  p.add_argument("--dataset", default="cifar10",
                 help="cifar10 (cifar10_jpeg.npz in $CNN_JAX_DATA_DIR), digits, mnist or "
                      "fashion_mnist")
  p.add_argument("--budget", nargs=2, metavar=("epochs|minutes", "N"),
                 help="per model and seed: N epochs, or about N minutes of training steps "
                      "(default with --quick: epochs 1; required otherwise)")
  p.add_argument("--seeds", type=int, default=1, help="runs per model, for mean ± std")
  p.add_argument("--quick", action="store_true",
                 help="train on 500 images, validate on 200 and test on 500 other training "
                      "images; benchmark at batch 32")
  p.add_argument("--workdir", default="runs/compare", metavar="DIR",
                 help="runs, benchmarks, tables and plots; re-running skips finished runs")
  p.add_argument("--bench-seconds", type=float, metavar="S",
                 help="timing budget of each benchmark (default 1 with --quick, else 10)")
  p = command("features")
  p.add_argument("--workdir", required=True, metavar="DIR",
                 help="run directory of a classification train command")
  p.add_argument("--image", required=True, metavar="FILE",
                 help="an image file (PNG, JPEG, ...), resized to the run's input size")
  p.add_argument("--out", default="feature_maps.png", help="the PNG to write")
  add_checkpoint(p)
  return parser


def run(argv: list[str]) -> int:
  rest, overrides = _split_overrides(argv)
  args = build_parser().parse_args(rest)
  if overrides and args.command not in ("train", "show-data", "search"):
    raise CnnJaxError("--config.key=value overrides only apply to train and show-data (and "
                      "search).")
  if args.command == "show-data":
    from cnn_jax import config as config_lib
    from cnn_jax.data.show import show_data
    config = config_lib.load_config(args.config)
    config_lib.apply_overrides(config, overrides)
    print(f"wrote {show_data(config, args.out, args.num_images, args.seed)}")
    return 0
  if args.command == "train":
    from cnn_jax import config as config_lib
    config = config_lib.load_config(args.config)
    config_lib.apply_overrides(config, overrides)
    if args.show_config:
      print(config)
      return 0
    if args.distributed or args.coordinator:
      from cnn_jax.train.parallel import initialize_distributed
      initialize_distributed(args.coordinator, args.num_processes, args.process_id)
    from cnn_jax.experiment import train
    results = train(config, args.workdir)
    print(results["diagnosis"])
    print(f"test {results['test']['summary']}  report: {args.workdir}/report.html")
    return 0
  if args.command == "eval":
    from cnn_jax.evaluate.run import evaluate_run
    results = evaluate_run(args.workdir, checkpoint=args.checkpoint, split=args.split)
    print(f"{args.split} (step {results['checkpoint_step']}): {results['summary']}  "
          f"wrote {results['json_path']}")
    return 0
  if args.command == "predict":
    from cnn_jax.predict import predict
    print(f"wrote {predict(args.workdir, args.image, args.out, checkpoint=args.checkpoint)}")
    return 0
  if args.command == "sample":
    from cnn_jax.sample import sample
    print(f"wrote {sample(args.workdir, args.num, args.out, args.checkpoint, args.seed)}")
    return 0
  if args.command == "study":
    from cnn_jax.transfer.study import Setup, run_study
    setup = Setup(args.variant, args.base, args.images, args.weights, args.image_size)
    run_study(args.workdir, setup, progress=not args.no_progress, replicates=args.replicates)
    print(f"wrote {os.path.join(args.workdir, 'study.md')} (and study.json, study.png)")
    return 0
  if args.command == "search":
    from cnn_jax.search.report import write_report
    from cnn_jax.search.study import run_search
    result = run_search(args.config, args.study_dir, sampler=args.sampler, trials=args.trials,
                        pruner=args.pruner, storage=args.storage, seed=args.seed,
                        workers=args.workers, overrides=overrides, study_name=args.study_name)
    counts = ", ".join(f"{n} {state.lower()}" for state, n in sorted(result["counts"].items()))
    print(f"study {args.study_dir}: {counts}; this process ran {result['ran']} trial(s) and "
          f"compiled {result['compilations']} train step(s)")
    if result["best"] is not None:
      best = result["best"]
      print(f"best trial {best.number}: {result['metric']} {best.value:.4f}  {best.params}")
    report = write_report(args.study_dir, args.storage)
    print(f"wrote {report['table']}, {report['csv']}, {len(report['plots'])} plot(s)"
          + (f", {report['best_experiment']}" if report["best_experiment"] else ""))
    return 0
  if args.command == "search-report":
    from cnn_jax.search.report import write_report
    report = write_report(args.study_dir, args.storage)
    print(f"wrote {report['table']}, {report['csv']}, {len(report['plots'])} plot(s)"
          + (f", {report['best_experiment']}" if report["best_experiment"] else ""))
    return 0
  if args.command == "models":
    from cnn_jax.models.catalog import format_catalog
    print(format_catalog(args.pattern))
    return 0
  if args.command == "bench":
    import json
    from cnn_jax.bench import run_benchmarks
    results = run_benchmarks(
        [m.strip() for m in args.models.split(",") if m.strip()], out=args.out,
        progress=sys.stderr, table=sys.stderr if args.json else sys.stdout,
        batch_size=args.batch_size, image_size=args.image_size, channels=args.channels,
        mode=args.mode, dtype=args.dtype, seconds=args.seconds, steps=args.steps,
        repeats=args.repeats, warmup=args.warmup, num_devices=args.num_devices,
        peak_tflops=args.peak_tflops)
    if args.json:
      print(json.dumps(results, indent=2))
    return 0
  if args.command == "compare":
    from cnn_jax.compare import DEFAULT_MODELS, compare
    models = args.models.split(",") if args.models else DEFAULT_MODELS
    result = compare([m.strip() for m in models if m.strip()], dataset=args.dataset,
                     budget=args.budget, seeds=args.seeds, quick=args.quick,
                     workdir=args.workdir, bench_seconds=args.bench_seconds)
    with open(result["tables"]["md"]) as f:
      print(f.read())
    print(f"wrote {', '.join([*result['tables'].values(), *result['plots'].values()])}")
    return 0
  if args.command == "features":
    from cnn_jax.figures.features import run_features
    from cnn_jax.predict import read_image
    from cnn_jax.train.session import load_run
    session, state, step, _ = load_run(args.workdir, args.checkpoint)
    image = read_image(args.image, session.data.image_shape)
    title = f"{session.config.model.name} (step {step}): filters and feature maps"
    print(f"wrote {run_features(session.task, state, image, args.out, title)}")
    return 0
  if args.command == "filters":
    from cnn_jax.basics.filters import filter_grid, load_image
    image = load_image(args.image, args.max_size)
    print(f"wrote {filter_grid(image, args.out, args.padding)}")
    return 0
  if args.command == "summary":
    from cnn_jax import summary
    rules = None
    if args.param_groups:
      try:
        rules = ast.literal_eval(args.param_groups)
      except (ValueError, SyntaxError):
        raise CnnJaxError(f"--param-groups {args.param_groups!r} is not a Python literal; "
                          "write e.g. \"(('head', 1.0), ('*', 'frozen'))\".") from None
    print(summary(args.model, args.input_size, channels=args.channels,
                  num_classes=args.num_classes, depth=args.depth, param_groups=rules))
    return 0
  return 2


def main(argv: list[str] | None = None) -> None:
  logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
  from absl import logging as absl_logging
  # orbax logs its warnings, and every failed async save with a traceback; such a failure
  # reaches the user as one CnnJaxError line.
  absl_logging.set_verbosity(absl_logging.FATAL)
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  try:
    code = run(sys.argv[1:] if argv is None else argv)
  except CnnJaxError as e:
    print(f"error: {e}", file=sys.stderr)
    code = 2
  except OSError as e:  # a disk or permission failure that no library code put in words
    where = f"{e.filename}: " if e.filename else ""
    print(f"error: {where}{e.strerror or e}", file=sys.stderr)
    code = 2
  except KeyboardInterrupt:
    print("interrupted; re-run the same command to resume from the last checkpoint",
          file=sys.stderr)
    code = 130
  sys.exit(code)
