"""EasyR1 / Long-RL keys that the text stages name differently, do not need, or do not implement yet.

Their scripts and ``config.yaml`` files pass these keys; :data:`TEXT_UPSTREAM_KEYS` handles each before composition
(the rule: :mod:`longrl.config.upstream_keys`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from longrl.config.upstream_keys import UpstreamKeys, same_value

__all__ = ["NOT_APPLIED", "NOT_IMPLEMENTED", "NOT_NEEDED", "RENAMED", "TEXT_UPSTREAM_KEYS"]

_LOSS_AVG_MODES = {"token": "token-mean", "seq": "seq-mean-token-mean"}
_REWARD_KIND_OF_OPEN_ENDED = {True: "open_ended", False: "function"}

# upstream key -> (longrl key, value translation)
RENAMED: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "trainer.max_try_make_batch": ("algorithm.max_try_make_batch", same_value),
    "worker.actor.loss_avg_mode": ("worker.actor.loss_agg_mode", lambda value: _LOSS_AVG_MODES.get(value, value)),
    "data.is_omni": ("data.use_audio", same_value),  # Long-RL's Omni recipe trains on the audio too
    "data.video_fps": ("worker.rollout.fps", same_value),
    # Long-RL's switch for the judge, kept under worker.rollout there
    "worker.rollout.open_ended_reward": ("worker.reward.kind",
                                         lambda value: _REWARD_KIND_OF_OPEN_ENDED.get(value, value)),
}

_FAMILY_FROM_DIRECTORY = "longrl reads the model family from the model directory's config.json"
NOT_NEEDED: dict[str, str] = {
    "data.vila_model": _FAMILY_FROM_DIRECTORY,
    "worker.vila_model": _FAMILY_FROM_DIRECTORY,
    "worker.is_omni": _FAMILY_FROM_DIRECTORY,
    "worker.rollout.trust_remote_code": "EasyR1 and Long-RL overwrite it with worker.actor.model.trust_remote_code, "
                                        "the key longrl reads",
    "worker.rollout.disable_tqdm": "longrl's rollout engines draw no progress bar",
    "worker.rollout.max_model_len": "longrl sizes the vLLM engine from data.max_prompt_length + "
                                    "data.max_response_length",
    "data.audio_max_length": "longrl counts each row's audio tokens in the prompt length",
    "worker.rollout.limit_images": "vLLM never receives raw images from longrl (their features enter with the "
                                   "prompt), so it has no per-prompt image budget to set",
    "data.num_workers": "rows load in the trainer process (a pool of loader processes is not implemented; the "
                        "batches are the same)",
}

# upstream key -> (values with no effect, why other values are refused)
NOT_IMPLEMENTED: dict[str, tuple[tuple[Any, ...], str]] = {
    "trainer.find_last_checkpoint": ((True,), "longrl always resumes from the last checkpoint under "
                                              "trainer.save_checkpoint_path"),
}

# longrl key -> (its default, what is not applied); none today
NOT_APPLIED: dict[str, tuple[Any, str]] = {}

TEXT_UPSTREAM_KEYS = UpstreamKeys(RENAMED, NOT_NEEDED, NOT_IMPLEMENTED, NOT_APPLIED,
                                  # EasyR1 samples by time when video_fps is given
                                  implies={"data.video_fps": ("worker.rollout.num_video_frames", "null")})
