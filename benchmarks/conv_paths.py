"""XLA's convolution vs im2col vs space to depth, forward + backward, for every conv shape of the
small zoo models.

For each convolution of LeNet-5, the MNIST/digits simple CNNs, the CIFAR ResNet-20 (3x3,
stride 2, the 1x1 stride-2 projection of option B) and Xception-style depthwise convs at
CIFAR size, the step ``grad(sum(tanh(conv(x, w))))`` (w.r.t. the kernel, and the input too
unless the layer reads the images, whose gradient a training step never computes) is
jitted once per contender and timed in alternating rounds in one process:

* ``xla``: ``lax.conv_general_dilated``, NHWC/HWIO (what ``nn.Conv`` does);
* ``im2col``: :func:`cnn_jax.models.layers.im2col_conv` (shifted views + one matmul);
* ``space_to_depth``: :func:`cnn_jax.models.layers.space_to_depth_conv` (2x2 pixel blocks
  folded into channels, one convolution of blocks; stride-1 ungrouped shapes only);
* ``xla_nchw``: ``lax.conv_general_dilated`` with NCHW/OIHW operands (float32, ungrouped
  shapes only), to see whether XLA:CPU prefers the other layout.

Each round runs every contender for about ``--round-seconds``, in an order that rotates per
round; the speed-ups over xla are taken per round (timings seconds apart, so it
stays meaningful on a shared machine) and reported as the median with min/max. The last
column says what ``conv_impl="auto"`` picks (:func:`cnn_jax.models.layers.auto_conv_impl`),
so a run checks the rule against the measurement.

Usage::

  python benchmarks/conv_paths.py --rounds 5 --out /tmp/conv_paths.json
  python benchmarks/conv_paths.py --batch-size 32 --models lenet5   # the digits experiment

Prints a table to stderr and the JSON document to stdout (and ``--out``).
"""

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from cnn_jax import bench  # noqa: E402
from cnn_jax.models.layers import auto_conv_impl, im2col_conv, space_to_depth_conv  # noqa: E402

# (model, layer, input [H, W, C], kernel (kh, kw), features, stride, padding, groups,
#  reads the images)
SHAPES = [
    ("lenet5", "c1", (32, 32, 1), (5, 5), 6, 1, "VALID", 1, True),
    ("lenet5", "c3", (14, 14, 6), (5, 5), 16, 1, "VALID", 1, False),
    ("lenet5", "c5", (5, 5, 16), (5, 5), 120, 1, "VALID", 1, False),
    ("digits_simple_cnn", "block1", (16, 16, 1), (3, 3), 16, 1, "SAME", 1, True),
    ("digits_simple_cnn", "block2", (8, 8, 16), (3, 3), 32, 1, "SAME", 1, False),
    ("simple_cnn", "block1", (28, 28, 1), (3, 3), 32, 1, "SAME", 1, True),
    ("simple_cnn", "block2", (14, 14, 32), (3, 3), 64, 1, "SAME", 1, False),
    ("simple_cnn", "block3", (7, 7, 64), (3, 3), 128, 1, "SAME", 1, False),
    ("cifar_resnet20", "conv1", (32, 32, 3), (3, 3), 16, 1, "SAME", 1, True),
    ("cifar_resnet20", "stage1", (32, 32, 16), (3, 3), 16, 1, "SAME", 1, False),
    ("cifar_resnet20", "stage2_down", (32, 32, 16), (3, 3), 32, 2, "SAME", 1, False),
    ("cifar_resnet20", "proj2_1x1", (32, 32, 16), (1, 1), 32, 2, "VALID", 1, False),
    ("cifar_resnet20", "stage2", (16, 16, 32), (3, 3), 32, 1, "SAME", 1, False),
    ("cifar_resnet20", "stage3_down", (16, 16, 32), (3, 3), 64, 2, "SAME", 1, False),
    ("cifar_resnet20", "stage3", (8, 8, 64), (3, 3), 64, 1, "SAME", 1, False),
    ("depthwise", "dw32", (16, 16, 32), (3, 3), 32, 1, "SAME", 32, False),
    ("depthwise", "dw64", (8, 8, 64), (3, 3), 64, 1, "SAME", 64, False),
]
BF16_LAYERS = {("lenet5", "c1"), ("lenet5", "c3"), ("lenet5", "c5"), ("cifar_resnet20", "conv1"),
               ("cifar_resnet20", "stage1"), ("cifar_resnet20", "stage2"),
               ("cifar_resnet20", "stage3")}


def step_function(impl: str, stride: int, padding: str, groups: int, input_grad: bool):
  """The jitted ``(x, w) -> gradients`` of ``sum(tanh(conv(x, w)))`` for one contender."""
  def loss(x, w):
    if impl == "xla_nchw":
      y = lax.conv_general_dilated(x, w, (stride, stride), padding,
                                   dimension_numbers=("NCHW", "OIHW", "NCHW"),
                                   feature_group_count=groups)
    else:
      conv = {"im2col": im2col_conv, "space_to_depth": space_to_depth_conv}.get(
          impl, lax.conv_general_dilated)
      y = conv(x, w, (stride, stride), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
               feature_group_count=groups)
    return jnp.sum(jnp.tanh(y.astype(jnp.float32)))
  return jax.jit(jax.grad(loss, argnums=(0, 1) if input_grad else 1))


def operands(impl: str, batch: int, in_shape, kernel, features: int, groups: int, dtype):
  """Input ``[B, H, W, C]`` and kernel ``[kh, kw, C / G, F]`` (NCHW/OIHW for xla_nchw)."""
  rng = np.random.default_rng(0)
  height, width, channels = in_shape
  x = rng.standard_normal((batch, height, width, channels), np.float32)
  w = rng.standard_normal(kernel + (channels // groups, features), np.float32)
  w /= np.sqrt(np.prod(kernel) * channels / groups)
  if impl == "xla_nchw":
    x, w = x.transpose(0, 3, 1, 2), w.transpose(3, 2, 0, 1)
  return jnp.asarray(x, dtype), jnp.asarray(w, dtype)


def time_steps(function, args, steps: int) -> float:
  """Seconds per call of ``function(*args)`` over ``steps`` calls."""
  start = time.perf_counter()
  for _ in range(steps):
    out = function(*args)
  jax.block_until_ready(out)
  return (time.perf_counter() - start) / steps


def measure(shape: tuple, dtype_name: str, batch: int, rounds: int, round_seconds: float) -> dict:
  """Interleaved rounds of every contender for one convolution; see the module docstring."""
  model, layer, in_shape, kernel, features, stride, padding, groups, reads_images = shape
  dtype = jnp.dtype(dtype_name)
  impls = (["xla", "im2col"] + (["space_to_depth"] if stride == 1 and groups == 1 else [])
           + (["xla_nchw"] if groups == 1 and dtype == jnp.float32 else []))
  contenders, compile_s = {}, {}
  for impl in impls:
    function = step_function(impl, stride, padding, groups, not reads_images)
    args = operands(impl, batch, in_shape, kernel, features, groups, dtype)
    start = time.perf_counter()
    jax.block_until_ready(function(*args))
    compile_s[impl] = time.perf_counter() - start
    steps = max(1, round(round_seconds / time_steps(function, args, 1)))
    contenders[impl] = (function, args, steps)
  seconds = {impl: [] for impl in impls}
  for r in range(rounds):
    for impl in impls[r % len(impls):] + impls[:r % len(impls)]:
      function, args, steps = contenders[impl]
      seconds[impl].append(time_steps(function, args, steps))
  kernel_shape = kernel + (in_shape[2] // groups, features)
  return {
      "model": model, "layer": layer, "dtype": dtype_name, "batch_size": batch,
      "input": list(in_shape), "kernel": list(kernel_shape), "stride": stride,
      "padding": padding, "groups": groups, "input_grad": not reads_images,
      "ms": {impl: bench.spread([1e3 * s for s in v]) for impl, v in seconds.items()},
      **{f"{impl}_speedup": bench.spread([a / b for a, b in zip(seconds["xla"], seconds[impl])])
         for impl in ("im2col", "space_to_depth") if impl in seconds},
      "compile_s": compile_s,
      "auto_picks": auto_conv_impl((batch,) + tuple(in_shape), kernel_shape, (stride, stride),
                                   groups, ("NHWC", "HWIO", "NHWC"), dtype=dtype),
  }


def format_row(result: dict) -> str:
  ms, speedup = result["ms"], result["im2col_speedup"]
  nchw = f"{ms['xla_nchw']['median']:8.2f}" if "xla_nchw" in ms else "       -"
  blocks = result.get("space_to_depth_speedup")
  blocks = f"{blocks['median']:5.2f} [{blocks['min']:.2f}, {blocks['max']:.2f}]" if blocks \
      else f"{'-':>17}"
  kernel = "x".join(map(str, result["kernel"]))
  return (f"{result['model'] + '/' + result['layer']:<32} {result['dtype']:<8} "
          f"{'x'.join(map(str, result['input'])):>9} {kernel:>11} s{result['stride']} "
          f"{ms['xla']['median']:8.2f} {ms['im2col']['median']:8.2f} {nchw} "
          f"{speedup['median']:5.2f} [{speedup['min']:.2f}, {speedup['max']:.2f}]  {blocks}  "
          f"{result['auto_picks']}")


def main(argv=None) -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--batch-size", type=int, default=128)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--round-seconds", type=float, default=0.25)
  parser.add_argument("--models", default="", help="only these models' shapes, comma-separated")
  parser.add_argument("--dtypes", default="float32,bfloat16")
  parser.add_argument("--out", help="also write the JSON here")
  args = parser.parse_args(argv)
  models = set(filter(None, args.models.split(",")))
  load_start = os.getloadavg()[0]  # before the measurements
  print(f"{'model/layer':<32} {'dtype':<8} {'input':>9} {'kernel':>11} s  "
        f"{'xla ms':>7} {'im2col':>8} {'nchw':>8} im2col speed-up  s2d speed-up       auto",
        file=sys.stderr)
  results = []
  for dtype_name in args.dtypes.split(","):
    for shape in SHAPES:
      if (models and shape[0] not in models) or (
          dtype_name != "float32" and shape[:2] not in BF16_LAYERS):
        continue
      results.append(measure(shape, dtype_name, args.batch_size, args.rounds,
                             args.round_seconds))
      print(format_row(results[-1]), file=sys.stderr, flush=True)
  report = bench.environment(load_average_1m=load_start,
                             load_average_1m_at_end=os.getloadavg()[0], results=results)
  bench.print_report(report, args.out)


if __name__ == "__main__":
  main()
