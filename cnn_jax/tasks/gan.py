"""Generative adversarial networks: the original GAN (Goodfellow et al. 2014) and DCGAN
(Radford et al. 2016) as one task, ``"gan"``, with two networks ``{"gen", "disc"}``.

One loop step is one iteration of the notes' algorithm (Goodfellow et al., algorithm 1):

* The loop's batch holds ``k * m`` real images (``train.batch_size = k * m``,
  ``k = task.disc_steps``, default 1). A ``lax.scan`` does ``k`` discriminator updates,
  update ``i`` on real minibatch ``i`` and fresh noise ``z ~ N(0, I)`` ``[m, latent_dim]``:
  D maximizes ``log D(x) + log(1 - D(G(z)))``, i.e. minimizes the sigmoid cross-entropy of
  its real logits against ones plus that of its fake logits against zeros (the second set
  of notes: ``real_loss + fake_loss``).
* Then one generator update on fresh noise. ``task.generator_loss``: ``"non_saturating"``
  (default; minimizes ``-log D(G(z))``, the fake logits against ones, as DCGAN) or
  ``"minimax"`` (minimizes ``log(1 - D(G(z)))``, minus the fake logits against zeros).

``task.pack`` (default 1) is PacGAN's packing (Lin et al. 2018): the discriminator judges
``p`` samples at once, stacked along channels (``[B, H, W, C] -> [B / p, H, W, p * C]``),
real packs against fake packs; a generator that drops modes makes packs that look alike,
which a packed discriminator can tell, so packing penalizes mode collapse.

All losses are on logits (``optax.sigmoid_binary_cross_entropy``). Real images are scaled
from [0, 1] to the generator's output range ([-1, 1] for ``tanh``). The generator trains
with ``config.optimizer`` and ``config.model``; the discriminator with
``task.disc_optimizer`` and ``task.discriminator`` (a model section). Batch norm runs in
training mode in every update (D sees real and fake batches separately, as in DCGAN).
Use a constant schedule: the discriminator's optimizer counts ``k`` updates per step.

Evaluation: example ``i`` of a split gets the noise ``fold_in(PRNGKey(seed + 1), i)``, so
every evaluation sees the same samples. Validation logs the players' losses and mean
``D(x)``, ``D(G(z))``. With ``task.classifier_run`` (the workdir of a trained
classification run on the real data, e.g. ``runs/mnist_lenet5``) every evaluation also
scores one sample per example in that classifier's feature space
(:mod:`cnn_jax.metrics.generative`): the classifier FID (Fréchet distance of pre-logit
features, samples vs the split's real images; the primary metric), class coverage and
mean confidence; the final evaluation adds the floor, the FID of the real training split
vs the evaluated split. The figures are a grid of a fixed noise batch.
"""

import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from cnn_jax.errors import ConfigError
from cnn_jax.metrics import generative as generative_metrics
from cnn_jax.tasks.base import DROPOUT_STREAM, NOISE_STREAM, TASKS, Task, masked_sum, means
from cnn_jax.tasks.classification import build_model
from cnn_jax.train.state import Network

GENERATOR_LOSSES = ("non_saturating", "minimax")
JUDGE_KEYS = ("real_features", "fake_features", "fake_class_counts", "fake_confidence")
FIXED_NOISE_STREAM = 3  # key of the fixed noise batch of the figures and samples
GRID_SIZE = 64


def gan_adam(learning_rate: float = 2e-4) -> ml_collections.ConfigDict:
  """The DCGAN paper's optimizer section: Adam, learning rate 2e-4, b1 0.5."""
  return ml_collections.ConfigDict({"name": "adam", "learning_rate": learning_rate, "b1": 0.5,
                                    "weight_decay": 0.0})


def dcgan_config(dataset: ml_collections.ConfigDict, *, classifier_run: str = "",
                 epochs: int = 5, batch_size: int = 64, latent_dim: int = 100,
                 widths: tuple | None = None, disc_widths: tuple | None = None,
                 eval_batch_size: int = 1000) -> ml_collections.ConfigDict:
  """A DCGAN experiment (the module docstring's settings) on ``dataset``: pixel-shuffle
  generator with tanh output, strided-convolution discriminator, :func:`gan_adam` for both
  players, constant schedule, non-saturating loss. ``widths`` (None: the models' defaults
  for the image size) sets the generator's widths; ``disc_widths`` the discriminator's
  (None: ``widths`` reversed, or the model's default when ``widths`` is None too)."""
  from cnn_jax.config import train_section
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.dataset = dataset
  config.model = ml_collections.ConfigDict({"name": "dcgan_generator", "latent_dim": latent_dim,
                                            "upsample": "pixel_shuffle", "output": "tanh"})
  config.task = ml_collections.ConfigDict({
      "name": "gan", "disc_steps": 1, "generator_loss": "non_saturating",
      "discriminator": {"name": "dcgan_discriminator"}, "disc_optimizer": gan_adam(),
      "pack": 1, "classifier_run": classifier_run})
  if widths is not None:
    config.model.widths = tuple(widths)
    disc_widths = tuple(reversed(widths)) if disc_widths is None else disc_widths
  if disc_widths is not None:
    config.task.discriminator.widths = tuple(disc_widths)
  config.optimizer = gan_adam()
  config.schedule = ml_collections.ConfigDict({"name": "constant"})
  config.train = train_section(epochs=epochs, batch_size=batch_size,
                               eval_batch_size=eval_batch_size, log_every_steps=50)
  return config


def dataset_title(config: ml_collections.ConfigDict) -> str:
  """The dataset's name for figure titles: the file's stem (``mnist``) for file sources."""
  file = config.dataset.get("file")
  return os.path.splitext(os.path.basename(file))[0] if file else config.dataset.name


def model_from_section(section, **fixed):
  """The network a model config section names (``name`` plus constructor options)."""
  return build_model(ml_collections.ConfigDict({"model": dict(section)}), **fixed)


def optimizer_section(section, fallback: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A task's own optimizer section, or ``fallback`` (``config.optimizer``) when unset."""
  return fallback if not section else ml_collections.ConfigDict(dict(section))


def to_unit_range(images: jax.Array, value_range: tuple[float, float]) -> jax.Array:
  """Images in ``value_range`` -> [0, 1]."""
  low, high = value_range
  return (images - low) / (high - low)


class RunClassifier:
  """A trained classification run as a judge of images: its logits and pre-logit features.

  Images ``[B, H, W, C]`` in [0, 1] of any size with 1 or 3 channels are brought to the
  run's input: channels averaged (colour -> gray) or repeated (gray -> colour), zero-padded
  when that run's ``dataset.resize`` is ``"pad"`` and bilinearly resized otherwise, then
  normalized as in that run.
  """

  def __init__(self, workdir: str, load_run, option: str = "task.classifier_run"):
    if not os.path.isfile(os.path.join(workdir, "config.json")):
      raise ConfigError(f"{option}={workdir!r} is not a run directory (no config.json); train "
                        "a classifier first, e.g. experiments/mnist_lenet5.py.")
    if load_run is None:
      raise ConfigError(f"{option} needs the task to be built by a run's session (it loads "
                        "another run); build the task through cnn_jax.train.session.setup.")
    session, self.state, self.step, _ = load_run(workdir)
    if session.task.name != "classification":
      raise ConfigError(f"{option}={workdir!r} is a {session.task.name!r} run; it must be a "
                        "classification run on the real data.")
    self.workdir, self.task = workdir, session.task
    self.input_shape = tuple(session.data.image_shape)
    self.pad = session.config.dataset.get("resize", "bilinear") == "pad"
    self.num_classes = len(session.task.class_names)

  def prepare(self, images: jax.Array) -> jax.Array:
    """``[B, H, W, C]`` in [0, 1] -> the classifier's normalized input ``[B, h, w, c]``."""
    height, width, channels = self.input_shape
    if images.shape[-1] != channels:
      images = (jnp.repeat(images, channels, axis=-1) if images.shape[-1] == 1
                else jnp.mean(images, axis=-1, keepdims=True))
    pad_h, pad_w = height - images.shape[1], width - images.shape[2]
    if self.pad and pad_h >= 0 and pad_w >= 0:
      images = jnp.pad(images, ((0, 0), (pad_h // 2, pad_h - pad_h // 2),
                                (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    elif images.shape[1:3] != (height, width):
      images = jax.image.resize(images, (images.shape[0], height, width, channels), "bilinear",
                                antialias=True)
    return images if self.task.normalize is None else self.task.normalize(images)

  def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Logits ``[B, K]`` and pre-logit features ``[B, D]`` of images in [0, 1]."""
    logits, features = self.task.predict(self.state, {"input": self.prepare(images)})
    return logits.astype(jnp.float32), features["pre_logits"].reshape(len(images), -1)

  def correct(self, images: jax.Array, labels: jax.Array) -> jax.Array:
    """float32 ``[B]``: 1 where the predicted class of an image is its label."""
    return (jnp.argmax(self(images)[0], -1) == labels).astype(jnp.float32)


def feature_moments(features: jax.Array, valid: jax.Array) -> dict:
  """Summable moments of the valid rows of ``[B, D]`` features: count, sum, sum of outer
  products (the Gaussian a Fréchet distance compares)."""
  weight = valid.astype(jnp.float32)[:, None]
  features = features.astype(jnp.float32) * weight
  return {"count": jnp.sum(weight), "sum": features.sum(0), "outer": features.T @ features}


def gaussian_of(moments) -> tuple[np.ndarray, np.ndarray]:
  """Mean ``[D]`` and covariance ``[D, D]`` (``N - 1`` normalized) from summed moments."""
  n = float(moments["count"])
  total, outer = np.asarray(moments["sum"], np.float64), np.asarray(moments["outer"], np.float64)
  mean = total / max(n, 1.0)
  return mean, (outer - n * np.outer(mean, mean)) / max(n - 1.0, 1.0)


def moments_distance(a, b) -> float:
  """The Fréchet distance between the Gaussians of two summed feature moments."""
  return generative_metrics.gaussian_frechet_distance(*gaussian_of(a), *gaussian_of(b))


@TASKS.register("gan")
class GANTask(Task):
  """The original GAN and DCGAN; see the module docstring."""
  name = "gan"
  inputs = {"image": "image"}
  options = {"disc_steps": 1, "generator_loss": "non_saturating",
             "discriminator": {"name": "dcgan_discriminator"}, "disc_optimizer": None,
             "pack": 1, "classifier_run": ""}
  primary_metric = ("val_d_loss", "max")  # without a classifier: the discriminator's confusion

  def __init__(self, config, data, **kwargs):
    super().__init__(config, data, **kwargs)
    self.disc_steps = int(self.opts["disc_steps"])
    if self.disc_steps < 1:
      raise ConfigError(f"task.disc_steps must be >= 1, got {self.disc_steps}.")
    if config.train.batch_size % self.disc_steps:
      raise ConfigError(f"train.batch_size={config.train.batch_size} must be a multiple of "
                        f"task.disc_steps={self.disc_steps}: each step feeds k minibatches.")
    self.pack = int(self.opts["pack"])
    minibatch = config.train.batch_size // self.disc_steps
    if self.pack < 1 or minibatch % self.pack or config.train.eval_batch_size % self.pack:
      raise ConfigError(f"task.pack={self.pack} must be >= 1 and divide the minibatch "
                        f"({minibatch} = train.batch_size / task.disc_steps) and "
                        f"train.eval_batch_size={config.train.eval_batch_size}.")
    if self.opts["generator_loss"] not in GENERATOR_LOSSES:
      raise ConfigError(f"task.generator_loss must be one of {', '.join(GENERATOR_LOSSES)}, "
                        f"got {self.opts['generator_loss']!r}.")
    output = config.model.get("output", "tanh")
    self.value_range = (-1.0, 1.0) if output == "tanh" else (0.0, 1.0)
    self.eval_noise_key = jax.random.PRNGKey(config.seed + 1)
    self.judge = None
    if self.opts["classifier_run"]:
      self.judge = RunClassifier(self.opts["classifier_run"], self.load_run)
      self.primary_metric = ("val_fid", "min")

  # ---- networks ----
  def build_networks(self, make_optimizer):
    generator = build_model(self.config, image_shape=tuple(self.image_shape))
    self.latent_dim = int(generator.latent_dim)
    height, width, channels = self.image_shape
    pack_shape = (height, width, channels * self.pack)
    discriminator = model_from_section(self.opts["discriminator"], image_shape=pack_shape)
    disc_opt = optimizer_section(self.opts["disc_optimizer"], self.config.optimizer)
    return {"gen": Network(generator, ((self.latent_dim,),), make_optimizer(self.config.optimizer)),
            "disc": Network(discriminator, (pack_shape,), make_optimizer(disc_opt))}

  def noise(self, key: jax.Array, count: int) -> jax.Array:
    """``z ~ N(0, I)``, ``[count, latent_dim]``."""
    return jax.random.normal(key, (count, self.latent_dim), jnp.float32)

  def eval_noise(self, index: jax.Array) -> jax.Array:
    """The fixed noise ``[B, latent_dim]`` of the examples at ``index [B]`` of a split."""
    return jax.vmap(lambda i: self.noise(jax.random.fold_in(self.eval_noise_key, i), 1)[0])(index)

  def packed(self, images: jax.Array) -> jax.Array:
    """The discriminator's input: ``[B, H, W, C] -> [B / p, H, W, p * C]``, each run of
    ``p = task.pack`` consecutive images stacked along channels (identity for ``p = 1``)."""
    b, h, w, c = images.shape
    p = self.pack
    return images.reshape(b // p, p, h, w, c).transpose(0, 2, 3, 1, 4).reshape(b // p, h, w, p * c)

  def to_model_range(self, images: jax.Array) -> jax.Array:
    """Real images in [0, 1] -> the generator's output range."""
    low, high = self.value_range
    return images * (high - low) + low

  def generate(self, state, z: jax.Array) -> jax.Array:
    """Inference-mode samples ``[B, H, W, C]`` (in the generator's range) for noise ``z``."""
    (images, _), _ = state.nets["gen"].apply(z, train=False)
    return images

  def generator_losses(self, fake_logits: jax.Array) -> jax.Array:
    """Per-example generator loss ``[B]`` of the discriminator's logits on samples."""
    if self.opts["generator_loss"] == "minimax":
      return -optax.sigmoid_binary_cross_entropy(fake_logits, jnp.zeros_like(fake_logits))
    return optax.sigmoid_binary_cross_entropy(fake_logits, jnp.ones_like(fake_logits))

  # ---- steps ----
  def train_step(self, state, batch):
    key = state.step_key()
    noise_key, dropout_key = (jax.random.fold_in(key, s) for s in (NOISE_STREAM, DROPOUT_STREAM))
    k = self.disc_steps
    m = batch["image"].shape[0] // k
    real = self.to_model_range(batch["image"]).reshape((k, m) + batch["image"].shape[1:])
    gen = state.nets["gen"]

    def disc_update(disc, inputs):
      real_i, i = inputs
      (fake, _), _ = gen.apply(self.noise(jax.random.fold_in(noise_key, i), m), train=True)
      fake = jax.lax.stop_gradient(fake)
      rng = jax.random.fold_in(dropout_key, i)

      def loss_fn(params):
        (real_logits, _), collections = disc.apply(self.packed(real_i), params=params,
                                                   train=True, rng=jax.random.fold_in(rng, 0))
        (fake_logits, _), collections = disc.replace(collections=collections).apply(
            self.packed(fake), params=params, train=True, rng=jax.random.fold_in(rng, 1))
        losses = (optax.sigmoid_binary_cross_entropy(real_logits, jnp.ones_like(real_logits))
                  + optax.sigmoid_binary_cross_entropy(fake_logits, jnp.zeros_like(fake_logits)))
        return losses.mean(), (losses, real_logits, fake_logits, collections)

      grads, (losses, real_logits, fake_logits, collections) = jax.grad(
          loss_fn, has_aux=True)(disc.params)
      return disc.apply_gradients(grads, collections), {
          "d_loss": losses, "d_real": jax.nn.sigmoid(real_logits),
          "d_fake": jax.nn.sigmoid(fake_logits)}

    disc, per_update = jax.lax.scan(disc_update, state.nets["disc"], (real, jnp.arange(k)))
    z = self.noise(jax.random.fold_in(noise_key, k), m)

    def gen_loss_fn(params):
      (fake, _), collections = gen.apply(z, params=params, train=True)
      (fake_logits, _), _ = disc.apply(self.packed(fake), train=True,
                                       rng=jax.random.fold_in(dropout_key, k))
      losses = self.generator_losses(fake_logits)
      return losses.mean(), (losses, collections)

    grads, (g_losses, collections) = jax.grad(gen_loss_fn, has_aux=True)(gen.params)
    nets = {"gen": gen.apply_gradients(grads, collections), "disc": disc}
    metrics = {"d_loss": masked_sum(per_update["d_loss"].reshape(-1)),
               "g_loss": masked_sum(g_losses),
               "d_real": masked_sum(per_update["d_real"].reshape(-1)),
               "d_fake": masked_sum(per_update["d_fake"].reshape(-1))}
    return state.replace(nets=nets), metrics

  def eval_step(self, state, batch):
    valid, disc = batch["valid"], state.nets["disc"]
    real = self.to_model_range(batch["image"])
    fake = self.generate(state, self.eval_noise(batch["index"]))
    (real_logits, _), _ = disc.apply(self.packed(real), train=False)
    (fake_logits, _), _ = disc.apply(self.packed(fake), train=False)
    valid_packs = valid.reshape(-1, self.pack).all(-1)  # padding never enters a pack's score
    d_losses = (optax.sigmoid_binary_cross_entropy(real_logits, jnp.ones_like(real_logits))
                + optax.sigmoid_binary_cross_entropy(fake_logits, jnp.zeros_like(fake_logits)))
    sums = {"d_loss": masked_sum(d_losses, valid_packs),
            "g_loss": masked_sum(self.generator_losses(fake_logits), valid_packs),
            "d_real": masked_sum(jax.nn.sigmoid(real_logits), valid_packs),
            "d_fake": masked_sum(jax.nn.sigmoid(fake_logits), valid_packs)}
    if self.judge is not None:
      sums.update(self.judge_sums(to_unit_range(real, self.value_range),
                                  to_unit_range(fake, self.value_range), valid))
    return sums, {}

  def judge_sums(self, real: jax.Array, fake: jax.Array, valid: jax.Array) -> dict:
    """The classifier's feature moments of real images and samples (both ``[B, H, W, C]``
    in [0, 1]), the samples' predicted-class counts ``[K]`` and confidence sum."""
    _, real_features = self.judge(real)
    fake_logits, fake_features = self.judge(fake)
    weight = valid.astype(jnp.float32)
    predicted = jax.nn.one_hot(jnp.argmax(fake_logits, -1), self.judge.num_classes)
    confidence = jnp.max(jax.nn.softmax(fake_logits, -1), -1)
    return {"real_features": feature_moments(real_features, valid),
            "fake_features": feature_moments(fake_features, valid),
            "fake_class_counts": (predicted * weight[:, None]).sum(0),
            "fake_confidence": masked_sum(confidence, valid)}

  def summarize(self, sums):
    sums = dict(sums)
    judged = {k: sums.pop(k) for k in JUDGE_KEYS if k in sums}
    results = means(sums)
    if judged:
      counts = np.asarray(judged["fake_class_counts"], np.float64)
      coverage = counts / max(counts.sum(), 1.0)
      confidence, count = judged["fake_confidence"]
      results.update({"fid": moments_distance(judged["real_features"], judged["fake_features"]),
                      "mean_confidence": float(confidence) / max(float(count), 1.0),
                      "min_class_coverage": float(coverage.min())})
    return results

  def progress_metrics(self, metrics):
    return {k: metrics[k] for k in ("d_loss", "g_loss", "fid") if k in metrics}

  # ---- whole-split evaluation ----
  def evaluate(self, evaluator, state, data, split):
    sums, _ = evaluator.run(state, data.splits[split])
    results = self.summarize(sums)
    results["num_samples"] = len(data.splits[split]["image"])
    if self.judge is not None:
      counts = np.asarray(sums["fake_class_counts"], np.float64)
      results["class_coverage"] = dict(zip(self.judge.task.class_names,
                                            (counts / max(counts.sum(), 1.0)).tolist()))
      results["classifier_run"] = self.judge.workdir
      if split != "train":
        train_sums, _ = evaluator.run(state, data.splits["train"])
        results["fid_floor"] = moments_distance(train_sums["real_features"],
                                                sums["real_features"])
    return results, {}

  def describe_results(self, results):
    text = (f"d_loss {results['d_loss']:.4f}  g_loss {results['g_loss']:.4f}  D(x) "
            f"{results['d_real']:.3f}  D(G(z)) {results['d_fake']:.3f}")
    if "fid" in results:
      floor = f" (real-vs-real floor {results['fid_floor']:.3f})" if "fid_floor" in results else ""
      text += (f"  classifier-FID {results['fid']:.3f}{floor}  min class coverage "
               f"{results['min_class_coverage']:.3f}  mean confidence "
               f"{results['mean_confidence']:.3f}")
    return text

  # ---- samples and figures ----
  def fixed_noise(self, count: int, seed: int | None = None) -> jax.Array:
    """The noise of the figures' grid: ``[count, latent_dim]`` from the run's seed (or
    ``seed``), the same at every checkpoint."""
    base = jax.random.PRNGKey(self.config.seed if seed is None else seed)
    return self.noise(jax.random.fold_in(base, FIXED_NOISE_STREAM), count)

  def draw_samples(self, state, data, num: int, seed: int | None, path: str) -> str:
    """A grid of ``num`` samples of the fixed noise (of ``seed``) written to ``path``."""
    from cnn_jax.figures import generative
    images = np.asarray(jax.jit(self.generate)(state, self.fixed_noise(num, seed)))
    return generative.plot_sample_grid(
        images, path, value_range=self.value_range,
        title=f"{self.config.model.name} on {dataset_title(self.config)}, step {int(state.step)}")

  def figures(self, state, data, split, results, outputs, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    return {"samples": self.draw_samples(state, data, GRID_SIZE, None,
                                         os.path.join(out_dir, "samples.png"))}
