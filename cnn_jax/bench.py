"""Throughput, compile time, memory, FLOPs and MFU of a model's train or inference step.

The step is the real one: the train loop's step (:func:`cnn_jax.train.loop.make_train_step`)
of the classification task (SGD with momentum, state donated) or the task's ``predict``,
jitted with the train loop's shardings over a 1-D ``data`` mesh (:func:`jitted_step`). Synthetic
images ``[B, H, W, C]`` (float32, the model's native size unless given) and labels ``[B]``
stay on the devices, so the numbers measure the step alone.

Timing: tracing (``lower``) and XLA compilation (``compile``) are timed separately; then
``warmup`` steps, each timed on its own; then ``repeats`` rounds of ``steps`` steps, each
round ending in ``block_until_ready``. Unless ``steps`` is given, it is sized from the
fastest warm-up step so that the rounds take about ``seconds`` together: a CPU gets an
answer in seconds, a GPU still runs thousands of steps per round. Throughput is reported
as the median and the min/max over rounds.

FLOPs come from XLA's cost analysis of the compiled step (a multiply-add counts 2). XLA
reports the program of one device, so the per-step total is that times the device count.
MFU is achieved FLOP/s over the devices' peak: ``peak_tflops`` per device if given, else
the dense peak of known accelerators (:data:`PEAK_TFLOPS`) for the step's dtype (bf16, or
TF32 for float32, which XLA's GPU matmuls and convolutions use by default), else ``None``
(CPUs).

Example::

  results = run_benchmarks(["lenet5", "cifar_resnet20"], batch_size=128, image_size=32,
                           progress=sys.stderr, table=sys.stdout)
  json.dumps(results, indent=2)
"""

import functools
import json
import math
import os
import platform
import statistics
import sys
import time
from typing import Callable, TextIO

import flax
import jax
import jax.numpy as jnp
import jaxlib
import ml_collections
import numpy as np
import optax

from cnn_jax.data import PreparedData
from cnn_jax.errors import CnnJaxError, ShapeError
from cnn_jax.models import create
from cnn_jax.models.catalog import input_shape
from cnn_jax.tasks import Task, get_task
from cnn_jax.train import loop, parallel, session
from cnn_jax.train.optim import make_optimizer, make_schedule
from cnn_jax.train.state import TrainState, check_input_shape, count_params

MODES = ("train", "infer")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
_OPTIMIZER = optax.sgd(0.01, momentum=0.9)

# Dense (no sparsity) tensor-core peak TFLOP/s per device in bf16 and TF32 (NVIDIA's data
# sheets), matched in order against ``device.device_kind``.
PEAK_TFLOPS = (
    ("H100 PCIe", {"bfloat16": 756.0, "float32": 378.0}),
    ("H100", {"bfloat16": 989.0, "float32": 494.7}),  # SXM
    ("H200", {"bfloat16": 989.0, "float32": 494.7}),
    ("A100", {"bfloat16": 312.0, "float32": 156.0}),
)


def known_peak_tflops(device: jax.Device, dtype: str = "bfloat16") -> float | None:
  """The dense peak of ``device`` for ``dtype`` compute ("bfloat16", or "float32" = TF32)
  from :data:`PEAK_TFLOPS`, or None if unknown."""
  for kind, peaks in PEAK_TFLOPS:
    if kind in device.device_kind:
      return peaks[dtype]
  return None


def host_cpu() -> str:
  """The host CPU's model name (from /proc/cpuinfo on Linux)."""
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def environment(**extra) -> dict:
  """What a benchmark's JSON records about where it ran: the command line, the device and
  host, the library versions, ``XLA_FLAGS`` and the 1-minute load average (plus ``extra``
  entries, e.g. other libraries' versions)."""
  device = jax.devices()[0]
  return {"command": " ".join(["python", *sys.argv]),
          "device": {"platform": device.platform, "kind": device.device_kind,
                     "host_cpu": host_cpu(), "host_cores": os.cpu_count()},
          "versions": {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
                       "flax": flax.__version__, "python": platform.python_version()},
          "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""), "load_average_1m": os.getloadavg()[0],
          **extra}


def time_task_step(task: Task, arrays: dict[str, np.ndarray], *, steps: int,
                   repeats: int) -> dict:
  """Compiles and times the train loop's step of ``task`` (networks with the optimizers of
  its config, a schedule of one step) on one batch ``arrays`` (every array ``[B, ...]``),
  kept on the device.

  Returns ``{"batch_size", "compile_s", "step_ms": {"median", "min", "max"},
  "images_per_s"}`` over ``repeats`` rounds of ``steps`` steps.
  """
  schedule = task.config.get("schedule")
  networks = task.build_networks(lambda section: make_optimizer(
      section, make_schedule(schedule, section.learning_rate, 1, 1)))
  batch_size = len(next(iter(arrays.values())))
  init, _ = session.state_initializer(task, networks, 0,
                                      session.train_batch_spec(arrays, batch_size))
  state = session.jit_initializer(init, parallel.make_mesh(1))()
  step = jax.jit(loop.make_train_step(task), donate_argnums=0)
  batch = jax.device_put(arrays)
  start = time.perf_counter()
  state = jax.block_until_ready(step(state, batch))
  compile_s = time.perf_counter() - start
  seconds = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(steps):
      state = step(state, batch)
    jax.block_until_ready(state)
    seconds.append((time.perf_counter() - start) / steps)
  return {"batch_size": batch_size, "compile_s": round(compile_s, 2),
          "step_ms": {k: round(1e3 * v, 2) for k, v in spread(seconds).items()},
          "images_per_s": round(batch_size / statistics.median(seconds), 1)}


def spread(values: list[float]) -> dict[str, float]:
  """``{"median", "min", "max"}`` of timing rounds."""
  return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def compiled_flops(compiled) -> float | None:
  """Per-device FLOPs of a ``jax.stages.Compiled`` from XLA's cost analysis (a dict in
  jax >= 0.4.30, a one-element list before); None if XLA gives no count."""
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else None
  return float(cost["flops"]) if cost and "flops" in cost else None


def _peak_memory_mb(devices) -> float | None:
  """The largest ``peak_bytes_in_use`` over this process's ``devices`` (since the process
  started), in MiB; None where the runtime has no memory statistics (the CPU backend)."""
  peaks = [(d.memory_stats() or {}).get("peak_bytes_in_use") for d in devices]
  peaks = [p for p in peaks if p is not None]
  return max(peaks) / 2**20 if peaks else None


@functools.lru_cache(maxsize=8)
def _task_and_init(model_name: str, dtype: str, num_classes: int, shape: tuple[int, int, int],
                   num_devices: int, model_options: tuple = ()
                   ) -> tuple[Task, Callable[[], TrainState]]:
  """The classification task on synthetic data of ``shape`` and the jitted initializer of
  its replicated train state (SGD with momentum). Cached: XLA takes seconds to compile the
  random initializers, and a train and an infer benchmark of the same model can share it
  (the train step donates the state, so not the state itself). ``model_options``: more
  model fields as ``(name, value)`` pairs, e.g. ``(("conv_impl", "xla"),)``.

  Raises:
    ShapeError: the model cannot take images of ``shape``.
  """
  config = ml_collections.ConfigDict({"model": {"name": model_name, "dtype": dtype,
                                                 **dict(model_options)},
                                      "optimizer": {}, "train": {"label_smoothing": 0.0}})
  data = PreparedData.synthetic(shape, [str(k) for k in range(num_classes)],
                                label=np.zeros(1, np.int32))
  task = get_task(config, data)
  networks = task.build_networks(lambda section: _OPTIMIZER)
  for net in networks.values():
    check_input_shape(net.module, net.input_shapes, model_name)
  init, _ = session.state_initializer(task, networks, 0,
                                      session.train_batch_spec(data.splits["train"], 1))
  mesh = parallel.make_mesh(num_devices)
  return task, session.jit_initializer(init, mesh)


def jitted_step(task: Task, mode: str, mesh, donate: bool) -> Callable:
  """The jitted step ``(state, batch) -> state`` ("train": the train loop's own step) or
  ``(state, batch) -> logits`` ("infer"), with the train loop's shardings. With
  :func:`_task_and_init`, the benchmark's one contact with the task and train-state
  interface."""
  replicated, batch_spec = parallel.replicated(mesh), parallel.batch_sharded(mesh)
  if mode == "train":
    return jax.jit(loop.make_train_step(task), in_shardings=(replicated, batch_spec),
                   out_shardings=replicated, donate_argnums=0 if donate else ())

  def infer(state: TrainState, batch: dict) -> jax.Array:
    logits, _ = task.predict(state, task.prepare_batch(None, batch, train=False))
    return logits

  return jax.jit(infer, in_shardings=(replicated, batch_spec), out_shardings=batch_spec)


def _synthetic_batch(mesh, batch_size: int, shape: tuple[int, int, int], num_classes: int) -> dict:
  """Images ``[B, H, W, C]`` ~ N(0, 1) and labels ``[B]``, sharded over ``mesh`` (every
  process builds the same arrays from a fixed seed and keeps its own shards)."""
  rng = np.random.default_rng(0)
  host = {"image": rng.standard_normal((batch_size,) + shape, dtype=np.float32),
          "label": rng.integers(0, num_classes, batch_size, dtype=np.int32)}
  sharding = parallel.batch_sharded(mesh)
  return {k: jax.make_array_from_callback(v.shape, sharding, lambda idx, v=v: v[idx])
          for k, v in host.items()}


def _check_settings(mode: str, dtype: str, batch_size: int) -> None:
  """Raises a CnnJaxError for an unknown mode or dtype or a batch size below 1."""
  if mode not in MODES:
    raise CnnJaxError(f"bench mode must be one of {', '.join(MODES)}, got {mode!r}.")
  if dtype not in DTYPES:
    raise CnnJaxError(f"bench dtype must be one of {', '.join(DTYPES)}, got {dtype!r}.")
  if batch_size < 1:
    raise CnnJaxError(f"bench batch_size must be >= 1, got {batch_size}.")


class StepTimer:
  """One model's compiled train or inference step on synthetic data, ready to time.

  Construction builds the model, the state and the batch and compiles the step (recording
  ``lower_s`` and ``compile_s``); :meth:`time` runs steps; :meth:`report` summarizes.
  Arguments are those of :func:`benchmark`, plus ``compiler_options``: XLA debug options
  for this compilation only, e.g. ``{"xla_cpu_enable_fast_math": True}`` (the same names
  as in ``XLA_FLAGS``; flags that the runtime reads at start-up have no effect here), and
  ``model_options``: more model fields, e.g. ``{"conv_impl": "xla"}``.
  """

  def __init__(self, model_name: str, *, batch_size: int = 128, image_size: int | None = None,
               channels: int | None = None, mode: str = "train", dtype: str = "float32",
               num_devices: int = 0, num_classes: int | None = None, donate: bool = True,
               compiler_options: dict | None = None, model_options: dict | None = None):
    _check_settings(mode, dtype, batch_size)
    shape = input_shape(model_name, image_size, channels)
    self.settings = {"model": model_name, "mode": mode, "dtype": dtype,
                     "batch_size": batch_size, "image_shape": list(shape),
                     "num_classes": num_classes or (1000 if shape[0] >= 128 else 10)}
    mesh = parallel.make_mesh(num_devices)
    parallel.check_batch_size(batch_size, mesh, "bench batch_size")
    try:
      task, init = _task_and_init(model_name, dtype, self.settings["num_classes"], shape,
                                  mesh.size, tuple(sorted((model_options or {}).items())))
    except ShapeError as e:
      native = "x".join(map(str, input_shape(model_name)))
      raise ShapeError(f"{e} For bench, choose --image-size/--channels accordingly "
                       f"({model_name}'s native input is {native}).") from None
    self.devices = list(mesh.devices.flat)
    self.state = init()
    self.batch = _synthetic_batch(mesh, batch_size, shape, self.settings["num_classes"])
    start = time.perf_counter()
    lowered = jitted_step(task, mode, mesh, donate).lower(self.state, self.batch)
    self.lower_s = time.perf_counter() - start
    start = time.perf_counter()
    self.compiled = lowered.compile(compiler_options)
    self.compile_s = time.perf_counter() - start

  def time(self, steps: int) -> float:
    """Runs ``steps`` steps, waits for them, and returns the seconds per step."""
    start = time.perf_counter()
    if self.settings["mode"] == "train":
      for _ in range(steps):
        self.state = self.compiled(self.state, self.batch)
      jax.block_until_ready(self.state)
    else:
      jax.block_until_ready([self.compiled(self.state, self.batch) for _ in range(steps)])
    return (time.perf_counter() - start) / max(steps, 1)

  def report(self, seconds: list[float], peak_tflops: float | None = None) -> dict:
    """The JSON-serializable summary of rounds that took ``seconds`` per step (see
    :func:`benchmark`)."""
    devices, batch_size = self.devices, self.settings["batch_size"]
    per_device_flops = compiled_flops(self.compiled)
    gflops = per_device_flops * len(devices) / 1e9 if per_device_flops is not None else None
    achieved = gflops / statistics.median(seconds) / 1e3 if gflops is not None else None
    peak = peak_tflops or known_peak_tflops(devices[0], self.settings["dtype"])
    notes = []
    peak_memory = _peak_memory_mb([d for d in devices if d.process_index == jax.process_index()])
    if peak_memory is None:
      notes.append(f"{devices[0].platform} reports no memory_stats(): peak_memory_mb is null; "
                   "xla_memory_mb is XLA's static per-device estimate")
    else:
      notes.append("peak_memory_mb is the largest device peak since the process started "
                   "(earlier benchmarks in the same process count)")
    if peak is None:
      notes.append(f"no known peak for {devices[0].device_kind!r}: pass peak_tflops for MFU")
    memory = self.compiled.memory_analysis()
    env = environment()
    return {
        **self.settings,
        "params": sum(count_params(self.state).values()),
        "num_devices": len(devices),
        "images_per_s": spread([batch_size / s for s in seconds]),
        "ms_per_step": spread([s * 1e3 for s in seconds]),
        "lower_s": self.lower_s, "compile_s": self.compile_s,
        "gflops_per_step": gflops, "achieved_tflops": achieved, "peak_tflops": peak,
        "mfu": achieved / (peak * len(devices)) if achieved is not None and peak else None,
        "peak_memory_mb": peak_memory,
        "xla_memory_mb": None if memory is None else {
            "arguments": memory.argument_size_in_bytes / 2**20,
            "outputs": memory.output_size_in_bytes / 2**20,
            "temp": memory.temp_size_in_bytes / 2**20},
        "notes": notes,
        **{key: env[key] for key in ("device", "versions")},
    }


def steps_for_budget(seconds: float, repeats: int, step_s: float) -> int:
  """Steps per round so that ``repeats`` rounds of steps taking ``step_s`` last about
  ``seconds`` (at least one step per round)."""
  return max(1, math.floor(seconds / repeats / max(step_s, 1e-9)))


def _say(stream: TextIO | None, text: str) -> None:
  if stream is not None:
    print(text, file=stream, flush=True)


def benchmark(model_name: str, *, batch_size: int = 128, image_size: int | None = None,
              channels: int | None = None, mode: str = "train", dtype: str = "float32",
              seconds: float = 10.0, steps: int | None = None, warmup: int = 2,
              repeats: int = 5, num_devices: int = 0, num_classes: int | None = None,
              peak_tflops: float | None = None, donate: bool = True,
              progress: TextIO | None = None) -> dict:
  """Times ``mode`` ("train" or "infer") steps of ``model_name`` on synthetic data.

  Args:
    model_name: a registered model.
    batch_size: the global batch, split over the devices (must divide evenly).
    image_size, channels: images are ``[batch_size, image_size, image_size, channels]``;
      each defaults to the model's native input (e.g. 224x224x3 for resnet50).
    mode: "train" (forward, backward, SGD-momentum update) or "infer" (forward only).
    dtype: "float32", or "bfloat16" for bf16 compute with float32 parameters and logits.
    seconds: the time budget of the timed rounds together; sizes ``steps``.
    steps: steps per timed round; default from ``seconds`` and the fastest warm-up step.
    warmup: untimed steps after compilation (at least 1).
    repeats: timed rounds.
    num_devices: devices in the mesh (0 = all).
    num_classes: classifier size; default 1000 for images of 128 pixels or more, else 10.
    peak_tflops: per-device peak for the MFU; default from :data:`PEAK_TFLOPS`.
    donate: let the train step reuse the state's buffers (as the train loop does).
    progress: a text stream (e.g. ``sys.stderr``) for a line per phase; None is silent.

  Returns:
    A JSON-serializable dict: the settings, ``params``, ``images_per_s`` and
    ``ms_per_step`` (each ``{"median", "min", "max"}`` over rounds), ``lower_s``,
    ``compile_s``, ``gflops_per_step`` (all devices), ``achieved_tflops``,
    ``peak_tflops``, ``mfu``, ``peak_memory_mb`` (null on CPU), ``xla_memory_mb``
    (XLA's per-device estimate), ``notes``, the device, the library versions and the
    timing plan (``seconds``, ``steps``, ``warmup``, ``repeats``).

  Raises:
    CnnJaxError: an unknown model, mode or dtype, bad step counts, a batch that does not
      split over the devices, or an image size the model cannot take.
  """
  if repeats < 1 or warmup < 1 or (steps is not None and steps < 1) or seconds <= 0:
    raise CnnJaxError("bench needs seconds > 0, steps >= 1, repeats >= 1 and warmup >= 1.")
  _say(progress, f"{model_name}: building the state and compiling the {mode} step ...")
  start = time.perf_counter()
  timer = StepTimer(model_name, batch_size=batch_size, image_size=image_size,
                    channels=channels, mode=mode, dtype=dtype, num_devices=num_devices,
                    num_classes=num_classes, donate=donate)
  _say(progress, f"{model_name}: ready in {time.perf_counter() - start:.1f} s (tracing "
                 f"{timer.lower_s:.1f} s, XLA compile {timer.compile_s:.1f} s); "
                 f"{warmup} warm-up step(s) ...")
  step_s = min(timer.time(1) for _ in range(warmup))
  steps = steps or steps_for_budget(seconds, repeats, step_s)
  _say(progress, f"{model_name}: timing {repeats} rounds of {steps} step(s) "
                 f"(about {repeats * steps * step_s:.0f} s) ...")
  rounds = [timer.time(steps) for _ in range(repeats)]
  return {**timer.report(rounds, peak_tflops), "seconds": seconds, "steps": steps,
          "warmup": warmup, "repeats": repeats}


def format_row(result: dict, name_width: int = 18) -> str:
  """One table line of a :func:`benchmark` result (see :func:`table_header`)."""
  images = result["images_per_s"]
  throughput = f"{images['median']:,.0f} [{images['min']:,.0f}–{images['max']:,.0f}]"
  gflops = "-" if result["gflops_per_step"] is None else f"{result['gflops_per_step']:.4g}"
  mfu = "-" if result["mfu"] is None else f"{100 * result['mfu']:.1f}%"
  return (f"{result['model']:<{name_width}}  {throughput:>26}  "
          f"{result['ms_per_step']['median']:>9.2f}  "
          f"{result['lower_s'] + result['compile_s']:>9.1f}  {gflops:>10}  {mfu:>6}")


def table_header(name_width: int = 18) -> str:
  """The column titles of :func:`format_row`; compile s is tracing plus XLA compilation."""
  return (f"{'model':<{name_width}}  {'img/s median [min–max]':>26}  {'ms/step':>9}  "
          f"{'compile s':>9}  {'GFLOP/step':>10}  {'MFU':>6}")


def print_report(report, out: str | None = None, indent: int = 2) -> str:
  """Prints ``report`` as JSON on stdout and also writes it to ``out`` if given (how the
  benchmark scripts end); returns the text."""
  text = json.dumps(report, indent=indent)
  print(text)
  if out:
    with open(out, "w") as f:
      f.write(text + "\n")
  return text


def run_benchmarks(models: list[str], *, out: str | None = None,
                   progress: TextIO | None = None, table: TextIO | None = None,
                   **options) -> list[dict]:
  """:func:`benchmark` for each model with the same ``options``.

  Progress lines go to ``progress`` and a table (header, then a row as soon as each model
  is done) to ``table``; either may be None. The list of results is also written as JSON
  to ``out`` if given. An unknown model name fails before anything is timed.
  """
  for name in models:
    create(name)  # an unknown name fails now, not after minutes of timing
  width = max([len("model")] + [len(name) for name in models])
  _say(table, table_header(width))
  results = []
  for i, name in enumerate(models):
    _say(progress, f"[{i + 1}/{len(models)}] {name}")
    results.append(benchmark(name, progress=progress, **options))
    _say(table, format_row(results[-1], width))
  if out:
    with open(out, "w") as f:
      json.dump(results, f, indent=2)
  return results
