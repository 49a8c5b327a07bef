"""longrl: reinforcement learning for vision-language models over long videos."""

from longrl._torchvision_compat import make_torchvision_importable

make_torchvision_importable()

__version__ = "0.1.0"
