"""CycleGAN (Zhu et al. 2017): unpaired translation between two image domains, the task
``"cyclegan"`` with four networks ``{"g_ab", "g_ba", "d_a", "d_b"}``.

Data: batches of domain A (``"image"``, float in [0, 1], ``"label"``) and domain B
(``"image_b"``, uint8, ``"label_b"``) from a two-domain source
(:mod:`cnn_jax.data.domain_pairs`). Both domains are scaled to [-1, 1] and given the
larger channel count (gray repeated to RGB), so the identity loss ``G_ab(b) ~ b`` is
defined between MNIST and MNIST-M; the generators are ``config.model`` (e.g.
``resnet_generator``), the discriminators ``task.discriminator`` (``patch_discriminator``).

One step, as the paper's code does it: the generators' joint update, then each
discriminator's on the generators' samples drawn from its history buffer.

* Generators minimize the least-squares adversarial loss ``(D_b(G_ab(a)) - 1)^2 +
  (D_a(G_ba(b)) - 1)^2`` (means over the patch maps) plus ``cycle_weight`` (λ = 10) x the
  L1 cycle losses ``|G_ba(G_ab(a)) - a| + |G_ab(G_ba(b)) - b|`` plus ``identity_weight``
  (0.5) x λ x the L1 identity losses ``|G_ab(b) - b| + |G_ba(a) - a|``. ``bab_cycle_weight``
  (default: λ) weighs the ``b -> a -> b`` cycle on its own: when A holds less than B (gray
  MNIST against digits over photos) that cycle can only be closed by hiding B's background in
  ``G_ba(b)``, and a lower weight lets ``G_ba`` drop it.
* Discriminators minimize ``((D(real) - 1)^2 + D(fake)^2) / 2``, the fakes taken from a
  ``history_size``-image buffer per domain (Shrivastava et al. 2017): while it fills each
  new sample is stored and used; then each is, with probability 1/2, swapped for a random
  stored one (which it replaces) and otherwise used as is. The buffers live in
  ``TrainState.extra``, so they are checkpointed and a resumed run stays exact.

Evaluation: the L1 cycle loss, and with ``task.classifier_a_run`` / ``classifier_b_run``
(classification runs on each real domain, e.g. ``runs/mnist_lenet5`` and
``runs/mnistm_lenet5``) label preservation: the A classifier's accuracy on ``G_ba(b)``
against B's labels (``b_to_a_label_preservation``), the B classifier's on ``G_ab(a)``
against A's (``a_to_b_label_preservation``), their minimum (the primary metric) and the
classifiers' accuracies on the real images of their own domain.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np

from cnn_jax.errors import ConfigError, DataError
from cnn_jax.tasks.base import TASKS, Task, masked_sum
from cnn_jax.tasks.classification import build_model
from cnn_jax.tasks.gan import RunClassifier, model_from_section, optimizer_section
from cnn_jax.train.state import Network

HISTORY_STREAM = 3
NUM_FIGURE_EXAMPLES = 8


def per_example_mean(values: jax.Array) -> jax.Array:
  """``[B, ...] -> [B]``: the mean over every axis but the first."""
  return values.reshape(values.shape[0], -1).mean(axis=1)


def query_history(history: dict, images: jax.Array, key: jax.Array) -> tuple[dict, jax.Array]:
  """The image history buffer (see the module docstring), one image at a time.

  Args:
    history: ``{"images": [S, H, W, C], "count": int32 []}`` (``count`` stored images).
    images: this step's samples ``[B, H, W, C]``.
    key: the randomness of the swaps.

  Returns:
    The updated buffer and the ``[B, H, W, C]`` images for the discriminator.
  """
  size = history["images"].shape[0]

  def one(carry, inputs):
    pool, count = carry
    image, image_key = inputs
    swap_key, index_key = jax.random.split(image_key)
    filling = count < size
    swap = jax.random.uniform(swap_key) < 0.5
    index = jnp.where(filling, count, jax.random.randint(index_key, (), 0, size))
    stored = pool[index]
    used = jnp.where(~filling & swap, stored, image)
    pool = pool.at[index].set(jnp.where(filling | swap, image, stored))
    return (pool, jnp.minimum(count + 1, size)), used

  (pool, count), used = jax.lax.scan(one, (history["images"], history["count"]),
                                     (images, jax.random.split(key, images.shape[0])))
  return {"images": pool, "count": count}, used


@TASKS.register("cyclegan")
class CycleGANTask(Task):
  """CycleGAN on an unpaired two-domain dataset; see the module docstring."""
  name = "cyclegan"
  inputs = {"image": "image", "label": "label", "image_b": "other", "label_b": "other"}
  options = {"discriminator": {"name": "patch_discriminator", "num_layers": 2},
             "disc_optimizer": None, "cycle_weight": 10.0, "bab_cycle_weight": None,
             "identity_weight": 0.5, "history_size": 50, "classifier_a_run": "",
             "classifier_b_run": ""}
  primary_metric = ("val_cycle_loss", "min")

  def __init__(self, config, data, **kwargs):
    super().__init__(config, data, **kwargs)
    train = data.splits["train"]
    if "image_b" not in train:
      raise DataError(f"task.name='cyclegan' needs a two-domain dataset with 'image_b' (e.g. "
                      f"dataset.name='mnist_mnistm'); {config.dataset.name!r} has "
                      f"{', '.join(train)}.")
    shape_a, shape_b = train["image"].shape[1:], train["image_b"].shape[1:]
    if shape_a[:2] != shape_b[:2]:
      raise DataError(f"both domains need one image size, got A {list(shape_a)} and B "
                      f"{list(shape_b)}; set dataset.image_size on the source instead.")
    self.shape = tuple(shape_a[:2]) + (max(shape_a[2], shape_b[2]),)
    self.history_size = int(self.opts["history_size"])
    if self.history_size < 0:
      raise ConfigError(f"task.history_size must be >= 0, got {self.history_size}.")
    self.judges = {}
    for domain in ("a", "b"):
      workdir = self.opts[f"classifier_{domain}_run"]
      if workdir:
        self.judges[domain] = RunClassifier(workdir, self.load_run,
                                            f"task.classifier_{domain}_run")
    if len(self.judges) == 2:
      self.primary_metric = ("val_label_preservation", "max")

  # ---- networks and state ----
  def build_networks(self, make_optimizer):
    channels = self.shape[-1]
    gen_opt = make_optimizer(self.config.optimizer)
    disc_opt = make_optimizer(optimizer_section(self.opts["disc_optimizer"],
                                                self.config.optimizer))
    generator = lambda: build_model(self.config, out_channels=channels)  # noqa: E731
    discriminator = lambda: model_from_section(self.opts["discriminator"])  # noqa: E731
    return {"g_ab": Network(generator(), (self.shape,), gen_opt),
            "g_ba": Network(generator(), (self.shape,), gen_opt),
            "d_a": Network(discriminator(), (self.shape,), disc_opt),
            "d_b": Network(discriminator(), (self.shape,), disc_opt)}

  def initial_extra(self):
    return {f"history_{domain}": {"images": jnp.zeros((self.history_size,) + self.shape,
                                                      jnp.float32),
                                  "count": jnp.zeros((), jnp.int32)}
            for domain in ("a", "b")}

  def to_domain(self, images: jax.Array) -> jax.Array:
    """Images in [0, 1] (float) or 0..255 (uint8) -> [-1, 1] with the shared channels."""
    images = images.astype(jnp.float32) / (255.0 if images.dtype == jnp.uint8 else 1.0)
    images = images * 2.0 - 1.0
    return jnp.repeat(images, self.shape[-1] // images.shape[-1], axis=-1)

  def translate(self, state, images: jax.Array, direction: str) -> jax.Array:
    """Inference-mode ``G_ab`` (``direction="ab"``) or ``G_ba`` of images in [-1, 1]."""
    (out, _), _ = state.nets[f"g_{direction}"].apply(images, train=False)
    return out

  # ---- steps ----
  def generator_loss(self, nets: dict, params: dict, real_a: jax.Array, real_b: jax.Array):
    """The generators' objective (module docstring) on real images ``[B, H, W, C]`` in
    [-1, 1], for generator parameters ``params = {"g_ab": ..., "g_ba": ...}`` and the
    discriminators of ``nets``: ``(total [B], {term: [B]}, fake_a, fake_b)``."""
    cycle_w = float(self.opts["cycle_weight"])
    bab_cycle_w = self.opts["bab_cycle_weight"]
    bab_cycle_w = cycle_w if bab_cycle_w is None else float(bab_cycle_w)
    identity_w = cycle_w * float(self.opts["identity_weight"])
    g_ab = lambda x: nets["g_ab"].apply(x, params=params["g_ab"], train=True)[0][0]  # noqa: E731
    g_ba = lambda x: nets["g_ba"].apply(x, params=params["g_ba"], train=True)[0][0]  # noqa: E731
    d = lambda name, x: nets[name].apply(x, train=True)[0][0]  # noqa: E731
    fake_b, fake_a = g_ab(real_a), g_ba(real_b)
    adversarial = (per_example_mean((d("d_b", fake_b) - 1.0) ** 2)
                   + per_example_mean((d("d_a", fake_a) - 1.0) ** 2))
    cycle_aba = per_example_mean(jnp.abs(g_ba(fake_b) - real_a))
    cycle_bab = per_example_mean(jnp.abs(g_ab(fake_a) - real_b))
    losses = {"adversarial_loss": adversarial, "cycle_loss": cycle_aba + cycle_bab,
              "bab_cycle_loss": cycle_bab}
    total = adversarial + cycle_w * cycle_aba + bab_cycle_w * cycle_bab
    if identity_w:
      losses["identity_loss"] = (per_example_mean(jnp.abs(g_ab(real_b) - real_b))
                                 + per_example_mean(jnp.abs(g_ba(real_a) - real_a)))
      total = total + identity_w * losses["identity_loss"]
    return total, losses, fake_a, fake_b

  def train_step(self, state, batch):
    key = state.step_key()
    real_a, real_b = self.to_domain(batch["image"]), self.to_domain(batch["image_b"])
    nets = state.nets

    def gen_loss_fn(params):
      total, losses, fake_a, fake_b = self.generator_loss(nets, params, real_a, real_b)
      return total.mean(), ({"g_loss": total, **losses}, fake_a, fake_b)

    gen_params = {name: nets[name].params for name in ("g_ab", "g_ba")}
    grads, (losses, fake_a, fake_b) = jax.grad(gen_loss_fn, has_aux=True)(gen_params)
    new_nets = {name: nets[name].apply_gradients(grads[name]) for name in ("g_ab", "g_ba")}

    extra = dict(state.extra)
    for domain, real, fake in (("a", real_a, fake_a), ("b", real_b, fake_b)):
      fake = jax.lax.stop_gradient(fake)
      if self.history_size:
        extra[f"history_{domain}"], fake = query_history(
            state.extra[f"history_{domain}"], fake,
            jax.random.fold_in(jax.random.fold_in(key, HISTORY_STREAM), ord(domain)))
      disc = nets[f"d_{domain}"]

      def disc_loss_fn(params, disc=disc, real=real, fake=fake):
        real_map = disc.apply(real, params=params, train=True)[0][0]
        fake_map = disc.apply(fake, params=params, train=True)[0][0]
        per_example = 0.5 * (per_example_mean((real_map - 1.0) ** 2)
                             + per_example_mean(fake_map ** 2))
        return per_example.mean(), per_example

      grads, per_example = jax.grad(disc_loss_fn, has_aux=True)(disc.params)
      new_nets[f"d_{domain}"] = disc.apply_gradients(grads)
      losses[f"d_{domain}_loss"] = per_example
    metrics = {name: masked_sum(value) for name, value in losses.items()}
    return state.replace(nets=new_nets, extra=extra), metrics

  def eval_step(self, state, batch):
    valid = batch["valid"]
    real_a, real_b = self.to_domain(batch["image"]), self.to_domain(batch["image_b"])
    fake_b, fake_a = self.translate(state, real_a, "ab"), self.translate(state, real_b, "ba")
    cycle = (per_example_mean(jnp.abs(self.translate(state, fake_b, "ba") - real_a))
             + per_example_mean(jnp.abs(self.translate(state, fake_a, "ab") - real_b)))
    sums = {"cycle_loss": masked_sum(cycle, valid)}
    unit = lambda x: (x + 1.0) / 2.0  # noqa: E731
    if "a" in self.judges:
      judge = self.judges["a"]
      sums["b_to_a_label_preservation"] = masked_sum(
          judge.correct(unit(fake_a), batch["label_b"]), valid)
      sums["a_classifier_accuracy"] = masked_sum(judge.correct(unit(real_a), batch["label"]),
                                                 valid)
    if "b" in self.judges:
      judge = self.judges["b"]
      sums["a_to_b_label_preservation"] = masked_sum(
          judge.correct(unit(fake_b), batch["label"]), valid)
      sums["b_classifier_accuracy"] = masked_sum(judge.correct(unit(real_b), batch["label_b"]),
                                                 valid)
    return sums, {}

  def summarize(self, sums):
    results = super().summarize(sums)
    directions = [k for k in ("a_to_b_label_preservation", "b_to_a_label_preservation")
                  if k in results]
    if len(directions) == 2:
      results["label_preservation"] = min(results[k] for k in directions)
    return results

  def progress_metrics(self, metrics):
    return {k: metrics[k] for k in ("g_loss", "cycle_loss", "label_preservation", "d_a_loss")
            if k in metrics}

  def describe_results(self, results):
    text = f"cycle L1 {results['cycle_loss']:.4f}"
    for key, name in (("a_to_b_label_preservation", "A->B"),
                      ("b_to_a_label_preservation", "B->A")):
      if key in results:
        text += f"  label preservation {name} {results[key]:.4f}"
    return text

  # ---- samples and figures ----
  def draw_samples(self, state, data, num: int, seed: int | None, path: str) -> str:
    """Rows of ``num`` test images of each domain, translated and translated back."""
    from cnn_jax.figures import generative
    arrays = data.splits["test"]
    rng = np.random.default_rng(self.config.seed if seed is None else seed)
    rows = rng.choice(len(arrays["image"]), size=min(num, len(arrays["image"])), replace=False)
    translate = jax.jit(self.translate, static_argnums=2)
    shown = []
    for source, there, back in (("A", "ab", "ba"), ("B", "ba", "ab")):
      key = "image" if source == "A" else "image_b"
      real = self.to_domain(jnp.asarray(arrays[key][rows]))
      moved = translate(state, real, there)
      shown += [(f"{source}", np.asarray(real)), (f"{source} translated", np.asarray(moved)),
                (f"{source} and back", np.asarray(translate(state, moved, back)))]
    return generative.plot_image_rows(
        shown, path, value_range=(-1.0, 1.0), max_images=len(rows),
        title=f"CycleGAN on {self.config.dataset.name}, step {int(state.step)}")

  def figures(self, state, data, split, results, outputs, out_dir):
    os.makedirs(out_dir, exist_ok=True)
    return {"translations": self.draw_samples(state, data, NUM_FIGURE_EXAMPLES, None,
                                              os.path.join(out_dir, "translations.png"))}
