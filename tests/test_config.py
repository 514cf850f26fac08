import os

import pytest

from cnn_jax import config as config_lib
from cnn_jax.errors import ConfigError
from conftest import REPO, digits_config

DEFAULT = os.path.join(REPO, "experiments", "digits_lenet5.py")


def test_every_experiment_loads():
  for name in sorted(os.listdir(os.path.join(REPO, "experiments"))):
    if name.endswith(".py"):
      config = config_lib.load_config(os.path.join(REPO, "experiments", name))
      assert config.model.name and config.dataset.name


def test_overrides_are_typed():
  config = config_lib.load_config(DEFAULT)
  config_lib.apply_overrides(config, ["optimizer.learning_rate=3e-4", "train.epochs=7",
                                      "train.progress=false", "dataset.name=npz"])
  assert config.optimizer.learning_rate == pytest.approx(3e-4)
  assert config.train.epochs == 7 and isinstance(config.train.epochs, int)
  assert config.train.progress is False
  assert config.dataset.name == "npz"


def test_misspelled_key_suggests_closest():
  config = config_lib.load_config(DEFAULT)
  with pytest.raises(ConfigError, match=r"--config\.optimizer\.learning_rate"):
    config_lib.apply_overrides(config, ["optimizer.learning_rat=0.1"])


@pytest.mark.parametrize("override, message", [
    ("train.epochs=1.5", "integer"),
    ("train.epochs=many", "number"),
    ("train.progress=maybe", "true or false"),
    ("train.epochs", "key=value"),
])
def test_bad_values(override, message):
  config = config_lib.load_config(DEFAULT)
  with pytest.raises(ConfigError, match=message):
    config_lib.apply_overrides(config, [override])


def test_missing_file_and_missing_get_config(tmp_path):
  with pytest.raises(ConfigError, match="does not exist"):
    config_lib.load_config(str(tmp_path / "nope.py"))
  bad = tmp_path / "bad.py"
  bad.write_text("x = 1\n")
  with pytest.raises(ConfigError, match="get_config"):
    config_lib.load_config(str(bad))


def test_json_round_trip(tmp_path):
  config = digits_config()
  path = str(tmp_path / "config.json")
  config_lib.save_json(config, path)
  assert config_lib.to_dict(config_lib.load_json(path)) == config_lib.to_dict(config)
