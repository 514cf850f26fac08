"""Transfer-learning study on CIFAR-10 cats vs dogs, step 3: the frozen pretrained base runs
once over every split (its last stage, 4x4x128, cached on disk); a new 256-unit dense head
trains on those features.

Paths to the other runs assume the study's layout under runs/transfer (``python -m cnn_jax
study transfer --workdir DIR`` sets them for DIR). ``:digits`` is the seconds-long version
(digits 8 vs 9). See cnn_jax/transfer/study.py.

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/cifar_catdog_3_features.py --workdir runs/transfer/3_features
"""

from cnn_jax.transfer.study import Setup, step_config


def get_config(variant: str = ""):
  return step_config("3_features", Setup(variant))
