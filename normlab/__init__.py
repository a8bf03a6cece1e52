"""normlab: normalization layers that work at any batch size, and the evidence for choosing one.

    import normlab
    norm = normlab.create_norm("bgn:groups=8", 64)
    model = normlab.convert_norms(torchvision.models.resnet18(), "bgn:groups=32")
"""

from . import layers
from .layers import *  # noqa: F401,F403 - the layer API is the package's public API
from .layers import __all__ as _layer_names

__version__ = "0.1.0"
__all__ = ["layers", "__version__", *_layer_names]
