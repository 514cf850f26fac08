"""Compile time of a run's initial-state program, with and without XLA's backend optimizations.

The initial train state (every network's ``init`` and optimizer state) is computed once per
run, so ``cnn_jax.train.session.jit_initializer`` compiles it without backend optimizations on
the CPU. This prints, per experiment, both compile times and whether the two programs give
bitwise-equal states (they need not: the values may differ in the last bits), as JSON:

  python benchmarks/init_compile.py shapes_unet.py:ci digits_lenet5.py mnist_dcgan.py:ci
"""

import json
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)  # time real compilations

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from cnn_jax import config as config_lib  # noqa: E402
from cnn_jax import data as data_lib  # noqa: E402
from cnn_jax.tasks import get_task  # noqa: E402
from cnn_jax.train import session  # noqa: E402


def measure(experiment: str) -> dict:
  """Compile seconds of the initializer of ``experiments/<experiment>``, both ways."""
  config = config_lib.load_config(os.path.join(REPO, "experiments", experiment))
  config.train.num_devices = 1
  data = data_lib.prepare(config, None)
  task = get_task(config, data)
  data = task.select_data(data)
  networks = task.build_networks(lambda section: optax.adam(1e-3))
  init, _ = session.state_initializer(
      task, networks, config.seed,
      session.train_batch_spec(data.splits["train"], config.train.batch_size))
  row, states = {"experiment": experiment}, []
  for name, options in (("optimized", None), ("unoptimized", session._INIT_COMPILER_OPTIONS)):
    start = time.perf_counter()
    compiled = jax.jit(init, compiler_options=options).lower().compile()
    row[f"{name}_compile_s"] = round(time.perf_counter() - start, 3)
    states.append(jax.tree.leaves(jax.device_get(compiled())))
  row["bitwise_equal"] = all(np.array_equal(a, b) for a, b in zip(*states))
  return row


if __name__ == "__main__":
  print(json.dumps([measure(e) for e in sys.argv[1:] or ["digits_lenet5.py"]], indent=2))
