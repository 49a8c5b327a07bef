"""A local model directory, loaded in-process through longrl's inference API, as a :class:`~lvreason.backends.Backend`.

The model is driven exactly as longrl trains and evaluates it (:class:`longrl.inference.VideoModel`: the same frame
sampling, chat template and rollout engine). The pipeline's prompts are complete texts, so they are passed through a
format prompt that adds nothing (``prompts/passthrough.jinja``) in direct (non-thinking) mode.

Requests go ``batch_size`` at a time in one engine call. The engine takes one seed per call, so a batch of sampled
requests is seeded from its requests' seeds together: the same batch (which the steps' fixed order gives) samples the
same replies. A request whose video cannot be decoded, or whose prompt the model refuses (``ValueError``), gets
``None``: logged, counted in :attr:`failures`, and the step drops the item; one bad request in a batch sends that
batch's requests through one by one so that the others still get replies.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, Optional

from longrl.data.video import VideoDecodeError
from longrl.inference import VideoModel

from lvreason.backends import Request
from lvreason.config import PROMPTS_DIR, ModelConfig
from lvreason.records import stable_seed

logger = logging.getLogger(__name__)
PASSTHROUGH_PROMPT = PROMPTS_DIR / "passthrough.jinja"


def _contents(request: Request) -> list[Any]:
    return [{"path": request.video}, request.text] if request.video is not None else [request.text]


class LocalBackend:
    def __init__(self, cfg: ModelConfig, role: str):
        self.cfg, self.role = cfg, role
        self.model = VideoModel.from_pretrained(cfg.model, backend="hf", num_video_frames=cfg.num_frames,
                                                max_pixels=cfg.max_pixels, direct_prompt=PASSTHROUGH_PROMPT)
        self.failures = 0

    def complete(self, requests: Sequence[Request], *, max_tokens: int, temperature: float = 0.0, n: int = 1,
                 seeds: Optional[Sequence[int]] = None) -> list[Optional[list[str]]]:
        replies: list[Optional[list[str]]] = []
        for start in range(0, len(requests), self.cfg.batch_size):
            batch = requests[start:start + self.cfg.batch_size]
            seed = None if seeds is None else stable_seed(*seeds[start:start + len(batch)])
            replies += self._batch(batch, max_new_tokens=max_tokens, temperature=temperature, n=n, seed=seed)
        return replies

    def _batch(self, requests: Sequence[Request], **options: Any) -> list[Optional[list[str]]]:
        try:
            return list(self.model.generate_batch([_contents(r) for r in requests], thinking=False, **options))
        except (VideoDecodeError, ValueError) as error:
            if len(requests) > 1:
                return [reply for request in requests for reply in self._batch([request], **options)]
            self.failures += 1
            logger.warning("models.%s: no reply for a request (%s)", self.role, error)
            return [None]
