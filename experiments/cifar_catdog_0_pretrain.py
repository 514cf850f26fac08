"""Transfer-learning study, source task: the VGG-style base (simple_cnn, three Conv-BN-ReLU +
max-pool stages of 32/64/128 channels, a 256-unit dense head) trained on the eight CIFAR-10
classes other than cat and dog; the later steps ``init_from`` this run. ``:digits`` is the
seconds-long version (scikit-learn digits 0-7). See cnn_jax/transfer/study.py.

  CNN_JAX_DATA_DIR=../shared/data python -m cnn_jax train \\
      --config experiments/cifar_catdog_0_pretrain.py --workdir runs/transfer/0_pretrain
"""

from cnn_jax.transfer.study import pretrain_config


def get_config(variant: str = ""):
  return pretrain_config(variant)
