"""GAN tasks end to end on sklearn digits (the CI-sized variants of the experiments): the
original GAN with k = 2 discriminator updates per step, DCGAN scored by a digits
classifier, CycleGAN with its history buffer in the checkpoint, and the sample command."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from cnn_jax import config as config_lib
from cnn_jax.errors import ConfigError
from cnn_jax.experiment import train
from cnn_jax.tasks.cyclegan import query_history
from conftest import REPO, digits_config


def _config(experiment: str, *overrides: str):
  config = config_lib.load_config(os.path.join(REPO, "experiments", f"{experiment}.py:ci"))
  config_lib.apply_overrides(config, ["train.num_devices=1", "train.progress=false", *overrides])
  return config


def _adam_count(opt_state) -> int:
  """The update count of the Adam state inside an optax state."""
  counts = [s.count for s in jax.tree.leaves(
      opt_state, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
      if isinstance(s, optax.ScaleByAdamState)]
  assert len(counts) == 1
  return int(counts[0])


@pytest.fixture(scope="module")
def digits_classifier(tmp_path_factory) -> str:
  """A LeNet-5 on 8x8 digits (resized to 32), trained for a few epochs: the judge."""
  workdir = str(tmp_path_factory.mktemp("digits_classifier"))
  results = train(digits_config(**{"train.epochs": 3}), workdir)
  assert results["test"]["accuracy"] > 0.7
  return workdir


def test_original_gan_does_k_discriminator_updates_per_step(tmp_path):
  config = _config("mnist_gan_mlp", "train.epochs=1")
  config.dataset.train_subset = 320
  assert config.task.disc_steps == 2 and config.train.batch_size == 32
  results = train(config, str(tmp_path))
  steps = results["steps"]
  assert steps == 10  # 320 images / (2 minibatches of 16)
  from cnn_jax.train.session import load_run
  _, state, _, _ = load_run(str(tmp_path), "latest")
  assert _adam_count(state.nets["disc"].opt_state) == 2 * steps
  assert _adam_count(state.nets["gen"].opt_state) == steps
  test = results["test"]
  for key in ("d_loss", "g_loss", "d_real", "d_fake"):
    assert np.isfinite(test[key])
  assert 0.0 < test["d_fake"] < 1.0 and "fid" not in test  # no classifier in this variant
  assert (tmp_path / "eval" / "samples.png").exists()


def test_generator_losses_on_logits():
  from cnn_jax.tasks.gan import GANTask
  logits = jnp.array([-30.0, 0.0, 30.0])
  task = GANTask.__new__(GANTask)
  task.opts = {"generator_loss": "non_saturating"}
  np.testing.assert_allclose(task.generator_losses(logits)[1], -np.log(0.5), rtol=1e-6)
  assert task.generator_losses(logits)[0] == pytest.approx(30.0, rel=1e-6)  # no overflow
  task.opts = {"generator_loss": "minimax"}
  log_one_minus_d = -np.logaddexp(0.0, np.asarray(logits, np.float64))  # log(1 - sigmoid)
  np.testing.assert_allclose(task.generator_losses(logits), log_one_minus_d, rtol=1e-5, atol=1e-6)


def test_summed_feature_moments_give_the_frechet_distance_of_the_features():
  from cnn_jax.metrics.generative import frechet_distance
  from cnn_jax.tasks.gan import feature_moments, moments_distance
  rng = np.random.default_rng(0)
  real, fake = rng.normal(size=(70, 5)), rng.normal(0.5, 2.0, size=(70, 5))
  valid = np.arange(80) < 70  # the last batch is padded, as in evaluation
  padded = lambda x: np.concatenate([x, np.full((10, 5), 9.0)])  # noqa: E731
  sums = [jax.tree.map(lambda *parts: sum(parts), *[
      feature_moments(jnp.asarray(padded(x)[i:i + 16], jnp.float32), jnp.asarray(valid[i:i + 16]))
      for i in range(0, 80, 16)]) for x in (real, fake)]
  assert moments_distance(*sums) == pytest.approx(frechet_distance(real, fake), rel=1e-4)


def test_dcgan_scored_by_our_classifier_and_sampled(tmp_path, digits_classifier):
  config = _config("mnist_dcgan", "train.epochs=2", f"task.classifier_run={digits_classifier}")
  assert config.task.pack == 2  # PacGAN, as the full experiment: eval batches split into packs
  results = train(config, str(tmp_path))
  test = results["test"]
  coverage = np.array(list(test["class_coverage"].values()))
  assert coverage.shape == (10,) and coverage.sum() == pytest.approx(1.0)
  assert test["min_class_coverage"] == pytest.approx(coverage.min())
  assert 0.1 <= test["mean_confidence"] <= 1.0
  # two epochs of a tiny generator are far from the real-vs-real floor
  assert 0.0 <= test["fid_floor"] < test["fid"]
  assert test["num_samples"] == 360
  from cnn_jax.sample import sample
  out = sample(str(tmp_path), num=9, out=str(tmp_path / "grid.png"), checkpoint="latest")
  assert os.path.getsize(out) > 0
  with pytest.raises(ConfigError, match="not a run directory"):
    train(_config("mnist_dcgan", "task.classifier_run=/nonexistent"), str(tmp_path / "x"))


def test_dcgan_config_mirrors_the_generator_widths_unless_told_otherwise():
  from cnn_jax.data.presets import dataset_preset
  from cnn_jax.tasks.gan import dcgan_config
  digits = dataset_preset("digits")
  mirrored = dcgan_config(digits, widths=(64, 32))
  assert mirrored.model.widths == (64, 32) and mirrored.task.discriminator.widths == (32, 64)
  own = dcgan_config(digits, widths=(128, 64), disc_widths=(32, 64))
  assert own.model.widths == (128, 64) and own.task.discriminator.widths == (32, 64)
  defaults = dcgan_config(digits)
  assert "widths" not in defaults.model and "widths" not in defaults.task.discriminator


def test_pacgan_packs_consecutive_samples_along_channels():
  from cnn_jax.data import PreparedData
  from cnn_jax.tasks.gan import GANTask
  config = _config("mnist_dcgan", "task.pack=2")
  task = GANTask(config, PreparedData.synthetic((8, 8, 1), [str(i) for i in range(10)]))
  images = jnp.arange(4 * 8 * 8, dtype=jnp.float32).reshape(4, 8, 8, 1)
  packed = task.packed(images)
  assert packed.shape == (2, 8, 8, 2)
  np.testing.assert_array_equal(packed[1, ..., 0], images[2, ..., 0])
  np.testing.assert_array_equal(packed[1, ..., 1], images[3, ..., 0])
  disc = task.build_networks(lambda section: optax.adam(1e-3))["disc"]
  assert disc.input_shapes == ((8, 8, 2),)  # one 2-channel pack per two samples
  variables = disc.module.init(jax.random.PRNGKey(0), packed)
  logits, _ = disc.module.apply(variables, packed)
  assert logits.shape == (2,)


def test_bad_gan_options_fail_in_one_line(tmp_path):
  with pytest.raises(ConfigError, match="multiple of task.disc_steps"):
    train(_config("mnist_gan_mlp", "train.batch_size=33"), str(tmp_path / "a"))
  with pytest.raises(ConfigError, match="generator_loss"):
    train(_config("mnist_dcgan", "task.generator_loss=wasserstein"), str(tmp_path / "b"))
  with pytest.raises(ConfigError, match="task.pack=3 must"):
    train(_config("mnist_dcgan", "task.pack=3"), str(tmp_path / "c"))


def test_history_buffer_fills_then_swaps():
  history = {"images": jnp.zeros((4, 1, 1, 1)), "count": jnp.zeros((), jnp.int32)}
  first = jnp.arange(1.0, 4.0).reshape(3, 1, 1, 1)
  history, used = query_history(history, first, jax.random.PRNGKey(0))
  np.testing.assert_array_equal(used, first)  # filling: the new images are used
  assert int(history["count"]) == 3
  np.testing.assert_array_equal(history["images"][:3], first)
  new = jnp.arange(10.0, 18.0).reshape(8, 1, 1, 1)
  history, used = query_history(history, new, jax.random.PRNGKey(1))
  assert int(history["count"]) == 4
  used = np.asarray(used).ravel()
  # the fourth fills the buffer; then each is used or swapped for a stored one
  assert used[0] == 10.0
  swapped = [u for u, n in zip(used[1:], np.arange(11.0, 18.0)) if u != n]
  assert swapped and set(swapped) <= set(range(1, 17))
  # nothing is lost: every image seen is still stored or was handed out by this call
  pool = set(np.asarray(history["images"]).ravel().tolist())
  assert len(pool) == 4
  assert pool | set(used.tolist()) == set(range(1, 4)) | set(range(10, 18))


def test_cyclegan_trains_and_checkpoints_its_history_buffers(tmp_path):
  config = _config("mnist_cyclegan", "train.epochs=1")
  results = train(config, str(tmp_path))
  assert results["steps"] == 20
  assert np.isfinite(results["test"]["cycle_loss"])
  step_dir = os.path.join(tmp_path, "checkpoints", str(results["steps"]), "state")
  saved = ocp.StandardCheckpointer().restore(step_dir)
  for domain, channels in (("a", 3), ("b", 3)):
    buffer = saved["extra"][f"history_{domain}"]
    assert int(buffer["count"]) == 50
    images = np.asarray(buffer["images"])
    assert images.shape == (50, 8, 8, channels)
    assert np.all(np.abs(images) <= 1.0) and images.std() > 0  # generated images, not zeros
  from cnn_jax.train.session import load_run
  _, state, _, _ = load_run(str(tmp_path), "latest")
  np.testing.assert_array_equal(state.extra["history_b"]["images"],
                                saved["extra"]["history_b"]["images"])
  assert (tmp_path / "eval" / "translations.png").exists()


def test_cyclegan_weighs_the_b_to_a_to_b_cycle_on_its_own():
  """On one state and batch, lowering ``bab_cycle_weight`` from λ = 10 to 2.5 lowers the
  generators' loss by 7.5 x the b -> a -> b cycle loss and leaves every other term alone."""
  from cnn_jax.train.session import setup
  session = setup(_config("mnist_cyclegan"), None)
  task, nets = session.task, session.state.nets
  train = session.data.splits["train"]
  real_a, real_b = task.to_domain(train["image"][:16]), task.to_domain(train["image_b"][:16])
  params = {name: nets[name].params for name in ("g_ab", "g_ba")}
  losses = {}
  for weight in (10.0, 2.5):  # the loss reads the option when it is traced
    task.opts["bab_cycle_weight"] = weight
    total, terms, _, _ = jax.jit(task.generator_loss)(nets, params, real_a, real_b)
    losses[weight] = {"g_loss": np.asarray(total), **jax.tree.map(np.asarray, terms)}
  high, low = losses[10.0], losses[2.5]
  np.testing.assert_array_equal(high["bab_cycle_loss"], low["bab_cycle_loss"])
  np.testing.assert_array_equal(high["cycle_loss"], low["cycle_loss"])
  assert high["bab_cycle_loss"].shape == (16,) and np.all(high["bab_cycle_loss"] > 0)
  np.testing.assert_allclose(high["g_loss"] - low["g_loss"], 7.5 * high["bab_cycle_loss"],
                             rtol=1e-5)
