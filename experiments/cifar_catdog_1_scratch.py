"""Transfer-learning study on CIFAR-10 cats vs dogs, step 1: the base network trained from
scratch on 1,000 cats + 1,000 dogs (32x32).

Paths to the other runs assume the study's layout under runs/transfer (``python -m cnn_jax
study transfer --workdir DIR`` sets them for DIR). ``:digits`` is the seconds-long version
(digits 8 vs 9). See cnn_jax/transfer/study.py.

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/cifar_catdog_1_scratch.py --workdir runs/transfer/1_scratch
"""

from cnn_jax.transfer.study import Setup, step_config


def get_config(variant: str = ""):
  return step_config("1_scratch", Setup(variant))
