"""The train state: one or more networks with their optimizers, the step, the RNG and the
running sums of the epoch's training metrics — one pytree, so checkpoints, sharding and
buffer donation work the same for a classifier (one network), a GAN (two) or a CycleGAN
(four).
"""

import dataclasses
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import struct

from cnn_jax.errors import ShapeError

# name -> (sum, count): what a train or eval step returns, summed over batches by the loop.
Metrics = dict[str, tuple[jax.Array, jax.Array]]


@dataclasses.dataclass(frozen=True)
class Network:
  """What a task asks the loop to build: a module, its example inputs and its optimizer.

  Attributes:
    module: a ``flax.linen`` Module called as ``module.apply(variables, *inputs, train=...)``.
    input_shapes: one shape per positional input without the batch axis, e.g.
      ``((32, 32, 3),)`` for images or ``((100,),)`` for a generator's noise.
    tx: the network's optimizer.
  """
  module: nn.Module
  input_shapes: tuple[tuple[int, ...], ...]
  tx: optax.GradientTransformation


@struct.dataclass
class NetState:
  """One network: parameters, mutable collections (e.g. ``batch_stats``), optimizer state."""
  params: Any
  collections: dict[str, Any]
  opt_state: Any
  apply_fn: Callable = struct.field(pytree_node=False)
  tx: optax.GradientTransformation = struct.field(pytree_node=False)

  def apply(self, *inputs, params=None, train: bool = False, rng: jax.Array | None = None):
    """Runs the network; returns ``(outputs, collections)``.

    With ``train`` dropout draws from ``rng`` and the returned collections are the
    updated ones (batch statistics of this batch); otherwise they are unchanged.
    ``params`` replaces the network's own (to differentiate with respect to them).
    """
    variables = {"params": self.params if params is None else params, **self.collections}
    if not train:
      return self.apply_fn(variables, *inputs, train=False), self.collections
    rngs = {"dropout": rng} if rng is not None else {}
    if not self.collections:
      return self.apply_fn(variables, *inputs, train=True, rngs=rngs), self.collections
    outputs, updates = self.apply_fn(variables, *inputs, train=True, rngs=rngs,
                                     mutable=list(self.collections))
    return outputs, {**self.collections, **updates}

  def apply_gradients(self, grads, collections: dict | None = None) -> "NetState":
    """One optimizer update; ``collections`` (if given) replace the mutable ones."""
    updates, opt_state = self.tx.update(grads, self.opt_state, self.params)
    return self.replace(params=optax.apply_updates(self.params, updates), opt_state=opt_state,
                        collections=self.collections if collections is None else collections)


@struct.dataclass
class TrainState:
  """Everything a run carries from step to step.

  Attributes:
    step: the number of completed steps.
    rng: a raw uint32 key; step ``s`` draws from ``fold_in(rng, s)``, so the randomness of
      every step is fixed by the seed alone.
    nets: ``{"net": ...}`` for supervised tasks, ``{"gen", "disc"}`` for a GAN, ...
    totals: running ``(sum, count)`` of each training metric over the current epoch (in the
      state, so a resumed run reports exactly the epoch metrics of an uninterrupted one).
    extra: task-owned state that must be checkpointed too (e.g. an image history buffer).
  """
  step: jax.Array
  rng: jax.Array
  nets: dict[str, NetState]
  totals: Metrics
  extra: Any = struct.field(default_factory=dict)

  def step_key(self) -> jax.Array:
    """This step's key; fold in small integers to get independent streams."""
    return jax.random.fold_in(self.rng, self.step)


def init_variables(module: nn.Module, rng: jax.Array, input_shapes) -> dict:
  """Initializes ``module`` with zero inputs of ``input_shapes`` (batch of one)."""
  inputs = [jnp.zeros((1,) + tuple(shape), jnp.float32) for shape in input_shapes]
  return module.init({"params": rng, "dropout": rng}, *inputs, train=False)


def check_input_shape(module: nn.Module, input_shapes, model_name: str) -> None:
  """Raises a ShapeError if ``module`` cannot take inputs of ``input_shapes`` (checked
  abstractly, without computing anything)."""
  try:
    jax.eval_shape(lambda rng: init_variables(module, rng, input_shapes), jax.random.PRNGKey(0))
  except ShapeError:
    raise
  except Exception as e:  # an XLA/flax shape failure deep inside the model
    first_line = (str(e).strip().splitlines() or [type(e).__name__])[0].rstrip(".")
    shapes = " and ".join(str(list(s)) for s in input_shapes)
    raise ShapeError(
        f"Model {model_name!r} cannot take inputs of shape {shapes}: {first_line}. Set "
        "dataset.image_size (or the task's input sizes) to what this model accepts.") from None


def zero_metrics(metrics_shape) -> Metrics:
  """Zeros with the structure of a step's metrics (e.g. from ``jax.eval_shape``)."""
  return jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), metrics_shape)


def create_train_state(networks: dict[str, Network], seed: int, totals: Metrics | None = None,
                       extra: Any = None) -> TrainState:
  """Initializes every network from ``seed``: network ``i`` (in the dict's order) draws its
  initial parameters from ``fold_in(fold_in(PRNGKey(seed), 0), i)`` (``i = 0`` uses
  ``fold_in(PRNGKey(seed), 0)`` itself), and the step stream is ``fold_in(PRNGKey(seed), 1)``.
  """
  root = jax.random.PRNGKey(seed)
  init_key = jax.random.fold_in(root, 0)
  nets = {}
  for i, (name, net) in enumerate(networks.items()):
    key = init_key if i == 0 else jax.random.fold_in(init_key, i)
    variables = dict(init_variables(net.module, key, net.input_shapes))
    params = variables.pop("params")
    nets[name] = NetState(params=params, collections=variables, opt_state=net.tx.init(params),
                          apply_fn=net.module.apply, tx=net.tx)
  return TrainState(step=jnp.zeros((), jnp.int32), rng=jax.random.fold_in(root, 1), nets=nets,
                    totals=totals or {}, extra={} if extra is None else extra)


def count_params(state: TrainState) -> dict[str, int]:
  """Parameters per network."""
  return {name: sum(int(p.size) for p in jax.tree.leaves(net.params))
          for name, net in state.nets.items()}
