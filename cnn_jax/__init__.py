"""cnn_jax: convolutional networks in JAX/Flax.

Public API::

  from cnn_jax import create_model, list_models
  model = create_model("lenet5", num_classes=10)
"""

from cnn_jax.models import create as create_model
from cnn_jax.models import list_models

__all__ = ["create_model", "list_models"]
