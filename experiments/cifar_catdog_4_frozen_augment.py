"""Transfer-learning study on CIFAR-10 cats vs dogs, step 4: the pretrained base frozen
inside the network (no gradient, batch norm in inference mode), a new head trained end to
end with augmentation.

Paths to the other runs assume the study's layout under runs/transfer (``python -m cnn_jax
study transfer --workdir DIR`` sets them for DIR). ``:digits`` is the seconds-long version
(digits 8 vs 9). See cnn_jax/transfer/study.py.

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/cifar_catdog_4_frozen_augment.py --workdir runs/transfer/4_frozen_augment
"""

from cnn_jax.transfer.study import Setup, step_config


def get_config(variant: str = ""):
  return step_config("4_frozen_augment", Setup(variant))
