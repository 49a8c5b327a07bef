"""longrl: reinforcement learning for vision-language models over long videos."""

from longrl._torchvision_compat import make_torchvision_importable
from longrl.models.hub_kernels import default_hub_kernels_off

make_torchvision_importable()
default_hub_kernels_off()

__version__ = "0.1.0"
