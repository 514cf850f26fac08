"""Parameter groups: config rules that freeze parts of a network or scale their learning rate.

``optimizer.param_groups`` is a sequence of ``(pattern, action)`` rules; for every parameter
the first rule whose pattern matches decides (parameters no rule matches train at the full
rate). ``action`` is ``"frozen"`` or a learning-rate multiplier (``0.1``). ``pattern`` is

* a group the model's family names (:func:`cnn_jax.models.catalog.layer_groups`): ``"stem"``,
  ``"stage1"`` .. ``"stageN"``, ``"head"``, and the shortcuts ``"stage-1"`` (the last stage,
  ``"stage-2"`` the one before), ``"stages"`` (every stage) and ``"base"`` (all but the head);
* otherwise a shell pattern over the parameter's path, e.g. ``"block3_*"`` or ``"*/bias"``.

So "fine-tune the last block at a tenth of the rate, train the new head, freeze the rest" is
``(("head", 1.0), ("stage-1", 0.1), ("*", "frozen"))``, without regular expressions.

The rules become labels of ``optax.multi_transform`` (:func:`grouped_optimizer`): frozen
parameters get ``optax.set_to_zero`` (no update, no weight decay, no optimizer state), each
multiplier its own copy of the optimizer on a scaled schedule. The supervised step
(:meth:`cnn_jax.tasks.base.SupervisedTask.train_step`) differentiates only the trainable
parameters (:func:`split` / :func:`merge`), so the frozen part costs no backward pass, and
runs the batch norms of frozen modules in inference mode (:func:`frozen_batch_norm`), as
Keras does for a layer with ``trainable=False``.
"""

import contextlib
import fnmatch
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from cnn_jax.errors import ConfigError
from cnn_jax.models.catalog import layer_groups

FROZEN = "frozen"
Rules = Sequence[tuple[str, Any]]
Path = tuple[str, ...]


def path_name(path: Path) -> str:
  """``("block1_conv1", "Conv_0", "kernel") -> "block1_conv1/Conv_0/kernel"``."""
  return "/".join(path)


def group_modules(model_name: str, top_level: list[str]) -> dict[str, list[str]]:
  """The model's named groups plus the shortcuts ``stage-K``, ``stages`` and ``base``:
  ``{group: [top-level module names]}``."""
  groups = layer_groups(model_name, top_level)
  stages = [g for g in groups if g.startswith("stage")]
  named = dict(groups)
  for back, stage in enumerate(reversed(stages), start=1):
    named[f"stage-{back}"] = groups[stage]
  if stages:
    named["stages"] = [m for s in stages for m in groups[s]]
  if "head" in groups:
    named["base"] = [m for m in top_level if m not in groups["head"]]
  return named


def check_rules(rules: Rules) -> list[tuple[str, Any]]:
  """The rules as ``(pattern, "frozen" | float)`` pairs; a malformed one raises."""
  checked = []
  for rule in rules or ():
    if not (isinstance(rule, (tuple, list)) and len(rule) == 2 and isinstance(rule[0], str)):
      raise ConfigError(f"optimizer.param_groups: {rule!r} is not a (pattern, action) pair, "
                        "e.g. ('head', 1.0) or ('*', 'frozen').")
    pattern, action = rule
    if action != FROZEN and (isinstance(action, bool) or not isinstance(action, (int, float))
                             or action < 0):
      raise ConfigError(f"optimizer.param_groups: the action of {pattern!r} must be 'frozen' "
                        f"or a learning-rate multiplier >= 0, got {action!r}.")
    checked.append((pattern, action if action == FROZEN else float(action)))
  return checked


def matcher(pattern: str, groups: dict[str, list[str]]) -> Callable[[Path], bool]:
  """``path -> bool`` for a rule's pattern: a group name, else a shell pattern on the path."""
  if pattern in groups:
    modules = set(groups[pattern])
    return lambda path: path[0] in modules
  return lambda path: fnmatch.fnmatchcase(path_name(path), pattern)


def assign(params, rules: Rules, model_name: str) -> dict[Path, Any]:
  """``{path: action}`` for every parameter of ``params`` (``1.0`` where no rule matches).

  Raises:
    ConfigError: a rule that matches no parameter (a misspelt group or pattern), naming the
      groups this model has.
  """
  flat = traverse_util.flatten_dict(params)
  groups = group_modules(model_name, list(params))
  checked = check_rules(rules)
  matchers = [matcher(pattern, groups) for pattern, _ in checked]
  for (pattern, _), matches in zip(checked, matchers):
    if not any(matches(path) for path in flat):
      known = ", ".join(groups) or "none (use path patterns such as 'dense*')"
      raise ConfigError(f"optimizer.param_groups: {pattern!r} matches no parameter of "
                        f"{model_name!r}. Its groups: {known}; or a shell pattern over paths "
                        f"such as {path_name(next(iter(flat)))!r}.")
  return {path: next((action for (_, action), matches in zip(checked, matchers)
                      if matches(path)), 1.0) for path in flat}


def frozen_paths(params, rules: Rules, model_name: str) -> frozenset[Path]:
  """The paths of the parameters the rules freeze."""
  return frozenset(p for p, action in assign(params, rules, model_name).items()
                   if action == FROZEN)


def label(action) -> str:
  return FROZEN if action == FROZEN else f"lr_x{action:g}"


def grouped_optimizer(rules: Rules, model_name: str,
                      make: Callable[[float], optax.GradientTransformation]
                      ) -> optax.GradientTransformation:
  """``optax.multi_transform`` over the rules' groups: ``make(multiplier)`` (the optimizer
  with its learning rate scaled) per multiplier, ``set_to_zero`` for frozen parameters."""
  actions = {a for _, a in check_rules(rules)} | {1.0}
  transforms = {label(a): optax.set_to_zero() if a == FROZEN else make(a) for a in actions}

  def labels(params):
    assigned = assign(params, rules, model_name)
    return traverse_util.unflatten_dict({p: label(a) for p, a in assigned.items()})

  return optax.multi_transform(transforms, labels)


def split(params, frozen: frozenset[Path]) -> tuple[dict, dict]:
  """``(trainable, frozen)`` flat ``{path: leaf}`` dicts of ``params``."""
  flat = traverse_util.flatten_dict(params)
  return ({p: v for p, v in flat.items() if p not in frozen},
          {p: v for p, v in flat.items() if p in frozen})


def merge(trainable: dict, frozen: dict) -> dict:
  """The nested params from the two halves of :func:`split`."""
  return traverse_util.unflatten_dict({**trainable, **frozen})


def full_gradients(trainable_grads: dict, frozen: dict) -> dict:
  """Nested gradients for the optimizer: the trainable ones, zeros for the frozen."""
  return merge(trainable_grads, jax.tree.map(jnp.zeros_like, frozen))


@contextlib.contextmanager
def frozen_batch_norm(frozen: frozenset[Path]):
  """Within the block, every ``nn.BatchNorm`` whose parameters are all frozen normalizes with
  its running statistics and leaves them unchanged (inference mode), whatever ``train``."""
  frozen_modules = {p[:-1] for p in frozen}

  def intercept(next_fn, args, kwargs, context):
    module = context.module
    if (isinstance(module, nn.BatchNorm) and context.method_name == "__call__"
        and tuple(module.path) in frozen_modules):
      # The models set the mode as a field (flax refuses it at call time as well); this
      # instance lives for one trace only, so switching its field affects nothing else.
      object.__setattr__(module, "use_running_average", True)
    return next_fn(*args, **kwargs)

  with nn.intercept_methods(intercept):
    yield
