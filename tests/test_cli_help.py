"""The command line: help for every command and option (defaults shown, no markup), and
the models listing (natural order, native input sizes)."""

import argparse

import pytest

from cnn_jax import main

PARSER = main.build_parser()
COMMANDS = next(a for a in PARSER._actions if isinstance(a, argparse._SubParsersAction))


def help_text(argv: list[str], capsys) -> str:
  with pytest.raises(SystemExit) as exit_info:
    PARSER.parse_args(argv + ["--help"])
  assert exit_info.value.code == 0
  return capsys.readouterr().out


def test_top_level_help_lists_each_command_on_one_line(capsys):
  text = help_text([], capsys)
  assert "``" not in text and ":func:" not in text
  assert set(COMMANDS.choices) == set(main.COMMAND_HELP)
  lines = text.splitlines()
  for command, summary in main.COMMAND_HELP.items():
    assert [line.split(None, 1) for line in lines if line.split()[:1] == [command]] == [
        [command, summary]]


@pytest.mark.parametrize("command", sorted(COMMANDS.choices))
def test_every_option_has_help_and_shows_its_default(command, capsys):
  text = " ".join(help_text([command], capsys).split())  # unwrapped
  assert text.startswith(f"usage: python -m cnn_jax {command}")
  for action in COMMANDS.choices[command]._actions:
    if isinstance(action, argparse._HelpAction):
      continue
    name = action.option_strings[0] if action.option_strings else action.dest
    assert action.help and action.help != argparse.SUPPRESS, f"{command} {name} has no help"
    if not action.required and action.default not in (None, False):
      assert f"(default: {action.default})" in text, f"{command} {name} hides its default"


@pytest.mark.parametrize("command", ["train", "show-data"])
def test_config_overrides_are_documented(command, capsys):
  text = help_text([command], capsys)
  assert "--config.KEY=VALUE" in text and "--config.train.epochs=20" in text


def test_overrides_apply_only_where_documented():
  with pytest.raises(main.CnnJaxError, match="only apply to train and show-data"):
    main.run(["models", "--config.train.epochs=2"])


def test_models_lists_natural_order_with_native_sizes(capsys):
  def listed(pattern: str) -> list[list[str]]:
    main.run(["models", pattern])
    return [line.split() for line in capsys.readouterr().out.splitlines()[1:]]

  rows = listed("resnet[0-9]*")
  assert [r[0] for r in rows] == ["resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]
  assert {r[1] for r in rows} == {"224x224x3"} and rows[0][2] == "11,689,512"  # torchvision's
  assert [r[0] for r in listed("cifar_resnet*")][-2:] == ["cifar_resnet56", "cifar_resnet110"]
  assert {r[1] for r in listed("*ception*")} == {"299x299x3"}


def test_native_input_shapes():
  from cnn_jax.models.catalog import input_shape
  assert input_shape("xception") == (299, 299, 3)
  assert input_shape("lenet5", 28) == (28, 28, 1) and input_shape("resnet18", 64, 1) == (64, 64, 1)
  assert input_shape("dcgan_generator") == (100,)  # a latent vector, not an image
  with pytest.raises(main.CnnJaxError, match="not images"):
    input_shape("dcgan_generator", 32)
