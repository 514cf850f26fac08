"""Training throughput of the same architectures in PyTorch and cnn_jax, interleaved.

One process, one machine: for every model the contenders (cnn_jax's jitted train step, and
PyTorch eager in NCHW and in channels_last memory format) are compiled and warmed up, then
timed in alternating rounds of about ``--round-seconds`` each. A round's JAX/torch ratio
compares timings taken seconds apart, so it stays meaningful on a shared, noisy machine; we
report the median ratio over rounds and its min/max, and every round's throughput.

A step is forward, softmax cross-entropy, backward and an SGD-momentum update (lr 0.01,
momentum 0.9), float32, batch norm in training mode, on a fixed synthetic batch:

* ``lenet5``: LeNet-5, 32x32x1, batch 128 (tanh, average pools, as cnn_jax's ``lenet5``);
* ``cifar_resnet20``: He et al. 2015's CIFAR ResNet-20 (option A shortcuts), 32x32x3,
  batch 128;
* ``resnet18``: torchvision's ResNet-18 layout, 224x224x3, 1000 classes, batch 16.

The PyTorch modules are written here (torchvision does not import next to the CPU torch
build); their parameter counts are checked against cnn_jax's.

``--jax-variants`` adds JAX contenders (bfloat16 compute, no donation, XLA CPU options; see
``JAX_VARIANTS``), each also compared with the default JAX step round by round. Setting
``XLA_FLAGS`` instead applies a flag to every JAX contender.

Usage (torch is an optional dependency: ``pip install torch==2.13.0``, a CPU build)::

  python benchmarks/pytorch_vs_jax.py --models lenet5,cifar_resnet20,resnet18 --rounds 5 \
      --jax-variants bfloat16 --torch-threads 1,2
  taskset -c 0 python benchmarks/pytorch_vs_jax.py --torch-threads 1   # one core each
  python benchmarks/pytorch_vs_jax.py --models cifar_resnet20 --jax-variants ynn_eltwise,ynn_off

Prints one JSON document (``--out`` also writes it to a file). Results and commands:
``benchmarks/RESULTS.md``.
"""

import argparse
import os
import sys
import time

# On a shared machine, OpenMP workers that spin while waiting collapse PyTorch's multi-thread
# throughput (we measured 20-40x on 2 busy cores); passive waiting avoids it. libgomp reads
# this when torch is imported. Set OMP_WAIT_POLICY=ACTIVE to measure the spinning default.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The two_devices* variants split the batch over two host CPU devices (data parallel, one
# program per core): JAX makes them only if told before it starts.
if any("two_devices" in arg for arg in sys.argv) and "host_platform_device_count" not in \
    os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_force_host_platform_device_count=2").strip()

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cnn_jax import bench  # noqa: E402
from cnn_jax.train.state import count_params  # noqa: E402
from cnn_jax.models import MODELS, model_options  # noqa: E402
import xla_cpu_options  # noqa: E402  (benchmarks/, this script's folder)

# model -> (image size, channels, classes, batch size)
SETTINGS = {
    "lenet5": (32, 1, 10, 128),
    "cifar_resnet20": (32, 3, 10, 128),
    "resnet18": (224, 3, 1000, 16),
}
# JAX contenders besides the default (float32, donated state): name -> StepTimer options.
# XLA flags go in as per-compilation options, so that they can be interleaved in one process.
JAX_VARIANTS = {
    "bfloat16": {"dtype": "bfloat16"},
    "no_donate": {"donate": False},
    "ynn_off": {"compiler_options": xla_cpu_options.YNN_OFF},
    "ynn_no_reduce": {"compiler_options": xla_cpu_options.YNN_NO_REDUCE},
    "ynn_eltwise": {"compiler_options": xla_cpu_options.YNN_ELTWISE},
    "two_devices": {"num_devices": 2},  # the batch split over two host CPU devices
    "two_devices_ynn_eltwise": {"num_devices": 2, "compiler_options": xla_cpu_options.YNN_ELTWISE},
    "eigen_single_thread": {"compiler_options": {"xla_cpu_multi_thread_eigen": False}},
    "fast_math": {"compiler_options": {"xla_cpu_enable_fast_math": True}},
    "vector_width_512": {"compiler_options": {"xla_cpu_prefer_vector_width": 512}},
    # the shared conv layer's implementations (the default is conv_impl="auto"), for the
    # models that have the conv_impl option (lenet5)
    "conv_xla": {"model_options": {"conv_impl": "xla"}},
    "conv_im2col": {"model_options": {"conv_impl": "im2col"}},
}


class TorchLeNet5(nn.Module):
  """C1 (5x5, 6) - avg pool - C3 (5x5, 16) - avg pool - C5 (5x5, 120) - F6 (84) - 10."""

  def __init__(self, channels: int = 1, num_classes: int = 10):
    super().__init__()
    self.c1, self.c3 = nn.Conv2d(channels, 6, 5), nn.Conv2d(6, 16, 5)
    self.c5, self.f6 = nn.Conv2d(16, 120, 5), nn.Linear(120, 84)
    self.output = nn.Linear(84, num_classes)

  def forward(self, x):
    x = F.avg_pool2d(torch.tanh(self.c1(x)), 2)
    x = F.avg_pool2d(torch.tanh(self.c3(x)), 2)
    x = torch.tanh(self.c5(x)).flatten(1)
    return self.output(torch.tanh(self.f6(x)))


class TorchBasicBlock(nn.Module):
  """Two 3x3 conv-BN layers; a strided or widening block's shortcut is option A ("pad":
  subsample and zero-pad channels) or B ("projection": 1x1 conv + BN)."""

  def __init__(self, cin: int, cout: int, stride: int, shortcut: str):
    super().__init__()
    self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(cout)
    self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(cout)
    self.stride, self.extra = stride, cout - cin
    self.shortcut = shortcut if (stride != 1 or cin != cout) else "identity"
    if self.shortcut == "projection":
      self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                      nn.BatchNorm2d(cout))

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    if self.shortcut == "projection":
      x = self.downsample(x)
    elif self.shortcut == "pad":
      x = F.pad(x[:, :, ::self.stride, ::self.stride],
                (0, 0, 0, 0, self.extra // 2, self.extra - self.extra // 2))
    return F.relu(y + x)


class TorchResNet(nn.Module):
  """A ResNet of basic blocks: the CIFAR one (3x3 stem, option A) or torchvision's
  ImageNet one (7x7/2 stem and 3x3/2 max pool, projection shortcuts)."""

  def __init__(self, widths, blocks_per_stage, cifar: bool, channels: int, num_classes: int):
    super().__init__()
    stem = widths[0]
    if cifar:
      self.stem = nn.Sequential(nn.Conv2d(channels, stem, 3, 1, 1, bias=False),
                                nn.BatchNorm2d(stem), nn.ReLU())
    else:
      self.stem = nn.Sequential(nn.Conv2d(channels, stem, 7, 2, 3, bias=False),
                                nn.BatchNorm2d(stem), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
    layers, cin = [], stem
    for s, (width, n) in enumerate(zip(widths, blocks_per_stage)):
      for b in range(n):
        layers.append(TorchBasicBlock(cin, width, 2 if s > 0 and b == 0 else 1,
                                      "pad" if cifar else "projection"))
        cin = width
    self.layers = nn.Sequential(*layers)
    self.fc = nn.Linear(cin, num_classes)

  def forward(self, x):
    return self.fc(self.layers(self.stem(x)).mean((2, 3)))


def torch_model(name: str, channels: int, num_classes: int) -> nn.Module:
  if name == "lenet5":
    return TorchLeNet5(channels, num_classes)
  if name == "cifar_resnet20":
    return TorchResNet((16, 32, 64), (3, 3, 3), True, channels, num_classes)
  if name == "resnet18":
    return TorchResNet((64, 128, 256, 512), (2, 2, 2, 2), False, channels, num_classes)
  raise ValueError(f"no PyTorch version of {name!r}; choose from {', '.join(SETTINGS)}")


class TorchTimer:
  """PyTorch eager training steps on a fixed batch, in ``memory_format``, on ``threads``
  intra-op threads."""

  def __init__(self, name: str, image_size: int, channels: int, num_classes: int,
               batch_size: int, memory_format: torch.memory_format, threads: int):
    torch.manual_seed(0)
    self.threads = threads
    self.model = torch_model(name, channels, num_classes).to(memory_format=memory_format)
    self.model.train()
    self.params = sum(p.numel() for p in self.model.parameters())
    self.images = torch.randn(batch_size, channels, image_size, image_size).contiguous(
        memory_format=memory_format)
    self.labels = torch.randint(0, num_classes, (batch_size,))
    self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.01, momentum=0.9)

  def time(self, steps: int) -> float:
    """Runs ``steps`` training steps; returns the seconds per step."""
    torch.set_num_threads(self.threads)
    start = time.perf_counter()
    for _ in range(steps):
      self.optimizer.zero_grad(set_to_none=True)
      F.cross_entropy(self.model(self.images), self.labels).backward()
      self.optimizer.step()
    return (time.perf_counter() - start) / steps


def compare(name: str, rounds: int, jax_variants: list[str], torch_threads: list[int],
            round_seconds: float, batch_size: int | None = None) -> dict:
  """Interleaved timing rounds of every contender for model ``name``.

  Each contender runs as many steps per round as fill about ``round_seconds`` (judged
  from a step after warm-up), so that every round is long enough to average out
  scheduling noise and all contenders are exposed to the machine's load alike.
  """
  if name not in MODELS:
    raise SystemExit(f"cnn_jax has no model {name!r} registered")
  image_size, channels, num_classes, default_batch = SETTINGS[name]
  batch_size = batch_size or default_batch
  contenders, compile_s = {}, {}
  options = set(model_options(name))  # variants that set a field the model lacks are skipped
  for variant in ["float32"] + [v for v in jax_variants
                                if set(JAX_VARIANTS[v].get("model_options", {})) <= options]:
    timer = bench.StepTimer(name, batch_size=batch_size, image_size=image_size,
                            channels=channels, num_classes=num_classes,
                            **{"num_devices": 1, **JAX_VARIANTS.get(variant, {})})
    contenders[f"jax_{variant}"] = timer
    compile_s[f"jax_{variant}"] = timer.compile_s
  for threads in torch_threads:
    for fmt, memory_format in (("nchw", torch.contiguous_format),
                               ("channels_last", torch.channels_last)):
      contenders[f"torch_{fmt}_{threads}t"] = TorchTimer(
          name, image_size, channels, num_classes, batch_size, memory_format, threads)
  jax_params = sum(count_params(contenders["jax_float32"].state).values())
  torch_params = contenders[f"torch_nchw_{torch_threads[0]}t"].params
  if jax_params != torch_params:
    raise SystemExit(f"{name}: cnn_jax has {jax_params} parameters, PyTorch {torch_params}")

  steps = {}
  for key, timer in contenders.items():
    timer.time(1)  # warm-up: caches, allocator, oneDNN primitives
    steps[key] = max(1, round(round_seconds / timer.time(1)))
  seconds = {key: [] for key in contenders}
  keys = list(contenders)
  for r in range(rounds):  # the order rotates, so that no contender always follows another
    for key in keys[r % len(keys):] + keys[:r % len(keys)]:
      seconds[key].append(contenders[key].time(steps[key]))
  jax_keys = [k for k in contenders if k.startswith("jax_")]
  others = [k for k in contenders if k.startswith("torch_")] + jax_keys[:1]
  # throughput ratios a/b per round: every JAX contender over every torch one, and every
  # JAX variant over the default JAX step
  ratios = {f"{a}/{b}": bench.spread([tb / ta for ta, tb in zip(seconds[a], seconds[b])])
            for a in jax_keys for b in others if a != b}
  jax_reports = {k: contenders[k].report(seconds[k]) for k in jax_keys}
  return {
      "model": name, "batch_size": batch_size, "image_shape": [image_size, image_size, channels],
      "num_classes": num_classes, "params": jax_params, "rounds": rounds,
      "steps_per_round": steps, "jax_compile_s": compile_s,
      "images_per_s": {k: bench.spread([batch_size / s for s in v]) for k, v in seconds.items()},
      "images_per_s_by_round": {k: [round(batch_size / s, 2) for s in v]
                                for k, v in seconds.items()},
      "throughput_ratio": ratios,
      # XLA's FLOPs of each JAX step, and MFU where the device's peak is known (GPUs)
      "jax_gflops_per_step": {k: r["gflops_per_step"] for k, r in jax_reports.items()},
      "jax_mfu": {k: r["mfu"] for k, r in jax_reports.items()},
  }


def environment() -> dict:
  """:func:`cnn_jax.bench.environment` plus torch's version and both libraries' threads."""
  env = bench.environment()
  env["versions"]["torch"] = torch.__version__
  env["threads"] = {"torch_intra_op_default": torch.get_num_threads(),
                    "torch_inter_op": torch.get_num_interop_threads(),
                    "cpu_affinity": sorted(os.sched_getaffinity(0)),
                    "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                    "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY")}
  return env


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--models", default="lenet5,cifar_resnet20,resnet18")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--round-seconds", type=float, default=2.0,
                      help="about how long each contender runs per round")
  parser.add_argument("--batch-size", type=int, help="batch size (default: per model)")
  parser.add_argument("--jax-variants", default="",
                      help=f"extra JAX contenders, comma-separated: {', '.join(JAX_VARIANTS)}")
  parser.add_argument("--torch-threads", default=str(torch.get_num_threads()),
                      help="PyTorch intra-op thread counts to time, comma-separated (e.g. 1,2)")
  parser.add_argument("--out", help="also write the JSON here")
  args = parser.parse_args(argv)
  torch_threads = [int(t) for t in args.torch_threads.split(",")]
  variants = [v for v in args.jax_variants.split(",") if v]
  unknown = [v for v in variants if v not in JAX_VARIANTS]
  if unknown:
    parser.error(f"unknown --jax-variants {unknown}; choose from {list(JAX_VARIANTS)}")
  models = args.models.split(",")
  if any(m not in SETTINGS for m in models):
    parser.error(f"--models must be among {', '.join(SETTINGS)}")
  start_env = environment()
  results = [compare(name, args.rounds, variants, torch_threads, args.round_seconds,
                     args.batch_size)
             for name in models]
  report = {**start_env, "load_average_1m_at_end": os.getloadavg()[0], "results": results}
  bench.print_report(report, args.out)


if __name__ == "__main__":
  main()
