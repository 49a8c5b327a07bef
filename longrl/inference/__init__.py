"""Inference on trained model directories: ``VideoModel.from_pretrained(dir).generate_content([video, question])``."""

from longrl.inference.contents import Contents
from longrl.inference.model import BACKENDS, VideoModel
from longrl.inference.prompts import PromptSet

__all__ = ["BACKENDS", "Contents", "PromptSet", "VideoModel"]
