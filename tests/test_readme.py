"""The README cannot drift: its commands parse, in an order that works from a fresh clone.

The shell blocks are read in order without running anything: every ``python -m cnn_jax``
command must name a command and flags that parse, config files and overrides that exist,
models that are registered, a workdir that an earlier command trained (for ``eval``), an
activated venv (or ``.venv/bin/python``) and ``CNN_JAX_DATA_DIR`` set before a config that
reads it. The Python blocks' ``cnn_jax.*`` calls must fit the API's signatures.
"""

import ast
import dataclasses
import inspect
import os
import re
import shlex

import pytest

import cnn_jax
from cnn_jax import config as config_lib
from cnn_jax import main
from cnn_jax.errors import ConfigError
from cnn_jax.models import MODELS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
with open(os.path.join(REPO, "README.md")) as _f:
  README = _f.read()
FENCED = re.compile(r"^ *```(\w*)\n(.*?)^ *```", re.M | re.S)
TRAIN_COMMAND = ("python3 -m venv .venv && .venv/bin/pip install -q -e . && .venv/bin/python "
                 "-m cnn_jax train --config experiments/digits_lenet5.py --workdir runs/digits_lenet5")
TEST_COMMAND = ("python3 -m venv .venv && .venv/bin/pip install -q -e '.[test]' && "
                ".venv/bin/python -m pytest -q -n 2 --dist loadfile")


def blocks(language: str) -> list[str]:
  return [body for lang, body in FENCED.findall(README) if lang == language]


def shell_commands() -> list[list[str]]:
  """Every simple command of the bash blocks, in order, as argv lists (continuation lines
  joined, comments dropped, ``a && b`` split)."""
  commands = []
  for body in blocks("bash"):
    for line in body.replace("\\\n", " ").splitlines():
      words = shlex.split(line, comments=True)
      while words:
        end = words.index("&&") if "&&" in words else len(words)
        commands.append(words[:end])
        words = words[end + 1:]
  return commands


@dataclasses.dataclass
class Invocation:
  """One ``python -m cnn_jax`` command of the README and the shell state before it."""
  python: str
  argv: list[str]
  venv_active: bool
  data_dir_set: bool
  trained_workdirs: set[str]

  def __str__(self) -> str:
    return " ".join(["python -m cnn_jax"] + self.argv)


def invocations() -> list[Invocation]:
  found, venv_active, data_dir_set, trained = [], False, False, set()
  for words in shell_commands():
    if words[:2] == ["source", ".venv/bin/activate"]:
      venv_active = True
    if words and words[0] == "export" and any(w.startswith("CNN_JAX_DATA_DIR=") for w in words):
      data_dir_set = True
    for i in range(len(words) - 2):
      if words[i].endswith(("python", "python3")) and words[i + 1:i + 3] == ["-m", "cnn_jax"]:
        argv = words[i + 3:]
        found.append(Invocation(words[i], argv, venv_active, data_dir_set, set(trained)))
        if argv[:1] == ["train"] and "--workdir" in argv:
          trained.add(argv[argv.index("--workdir") + 1])
  return found


INVOCATIONS = invocations()


def test_the_two_commands_at_the_top_stay_verbatim():
  assert [b.strip() for b in blocks("bash")[:2]] == [TRAIN_COMMAND, TEST_COMMAND]
  with open(os.path.join(REPO, ".ci", "run")) as f:
    assert f.read().strip().splitlines()[-1] == TEST_COMMAND  # CI runs the README's line


def test_every_command_is_found():
  commands = {inv.argv[0] for inv in INVOCATIONS}
  assert {"train", "eval", "models", "summary", "show-data", "bench"} <= commands
  assert len(INVOCATIONS) >= 10


@pytest.mark.parametrize("invocation", INVOCATIONS, ids=str)
def test_command_parses_and_runs_in_order(invocation):
  rest, overrides = main._split_overrides(invocation.argv)
  try:
    args = main.build_parser().parse_args(rest)
  except SystemExit as e:  # argparse has printed why
    assert e.code == 0 and "--help" in rest, f"does not parse: {invocation}"
    return
  assert invocation.python == ".venv/bin/python" or invocation.venv_active, (
      f"{invocation}: activate .venv before (or use .venv/bin/python)")
  if getattr(args, "config", None):
    config = config_lib.load_config(os.path.join(REPO, args.config))
    config_lib.apply_overrides(config, overrides)  # every override names an existing key
    if "data_dir" in config.dataset and not config.dataset.data_dir:
      assert invocation.data_dir_set, f"{invocation}: export CNN_JAX_DATA_DIR before it"
  if args.command == "eval":
    assert args.workdir in invocation.trained_workdirs, f"{invocation}: train it before"
  for name in getattr(args, "models", "").split(",") + [getattr(args, "model", "")]:
    assert not name or name in MODELS, f"{invocation}: no model {name!r}"


def api_calls() -> list[ast.Call]:
  calls = []
  for body in blocks("python"):
    calls += [node for node in ast.walk(ast.parse(body)) if isinstance(node, ast.Call)
              and isinstance(node.func, ast.Attribute)
              and isinstance(node.func.value, ast.Name) and node.func.value.id == "cnn_jax"]
  return calls


def test_python_blocks_fit_the_api():
  calls = api_calls()
  assert {"load_config", "train", "evaluate"} <= {call.func.attr for call in calls}
  for call in calls:
    assert call.func.attr in cnn_jax.__all__, ast.unparse(call)
    signature = inspect.signature(getattr(cnn_jax, call.func.attr))
    signature.bind(*call.args, **{k.arg: k.value for k in call.keywords})  # TypeError: drift


def test_api_load_config_and_summary():
  config = cnn_jax.load_config(os.path.join(REPO, "experiments", "digits_lenet5.py"),
                               ["train.epochs=3", "optimizer.learning_rate=0.01"])
  assert config.train.epochs == 3 and config.optimizer.learning_rate == 0.01
  with pytest.raises(ConfigError, match="train.epochs"):
    cnn_jax.load_config(os.path.join(REPO, "experiments", "digits_lenet5.py"), ["train.epoch=3"])
  text = cnn_jax.summary("lenet5", depth=1)
  assert "on input [1, 32, 32, 1]" in text and "Parameters: 61,706" in text


def test_train_and_evaluate_stay_callable_next_to_their_subpackages():
  import cnn_jax.train.parallel  # noqa: F401  binds the subpackage as cnn_jax.train
  from cnn_jax import evaluate, train
  assert callable(cnn_jax.train) and cnn_jax.train is train and callable(evaluate)
  assert cnn_jax.train.parallel.make_mesh  # the subpackage's modules are still there
  assert list(inspect.signature(train).parameters) == ["config", "workdir"]
