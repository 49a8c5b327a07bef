"""EasyR1 / Long-RL keys that longrl names differently, does not need, or does not implement yet.

Their scripts and ``config.yaml`` files pass these keys; each is handled here before composition, so none is an
unknown-key error and none is accepted silently:

* :data:`RENAMED` keys are aliases of a longrl key (with the value translated where the vocabularies differ);
* :data:`NOT_NEEDED` keys are dropped with a logged note saying why nothing is lost;
* :data:`NOT_IMPLEMENTED` keys are dropped while they hold a value with no effect (their upstream default), and
  refused with the reason otherwise.

Keys longrl's schema has but does not act on (:data:`NOT_APPLIED`) are logged when set away from their default.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from longrl.config.errors import ConfigError

__all__ = ["NOT_APPLIED", "NOT_IMPLEMENTED", "NOT_NEEDED", "RENAMED", "log_unapplied_settings", "upstream_overrides"]

logger = logging.getLogger("longrl.config")
_OVERRIDE_PARSER = OverridesParser.create()

_LOSS_AVG_MODES = {"token": "token-mean", "seq": "seq-mean-token-mean"}

# upstream key -> (longrl key, value translation)
RENAMED: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "trainer.max_try_make_batch": ("algorithm.max_try_make_batch", lambda value: value),
    "worker.actor.loss_avg_mode": ("worker.actor.loss_agg_mode", lambda value: _LOSS_AVG_MODES.get(value, value)),
    "data.is_omni": ("data.use_audio", lambda value: value),  # Long-RL's Omni recipe trains on the audio too
    "data.video_fps": ("worker.rollout.fps", lambda value: value),
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
    "data.image_dir": ((None,), "image paths resolve against data.video_dir (set that, or absolute paths)"),
    "data.override_chat_template": ((None,), "a replacement chat template is not implemented"),
    "worker.actor.model.lora.rank": ((0,), "LoRA for the vision-language RL stage is not implemented "
                                           "(Flow-GRPO has it)"),
    "worker.actor.model.lora.alpha": ((64,), "LoRA for the vision-language RL stage is not implemented"),
    "worker.actor.model.lora.target_modules": (("all-linear",), "LoRA for the vision-language RL stage is not "
                                                               "implemented"),
    "worker.actor.model.lora.exclude_modules": ((".*visual.*",), "LoRA for the vision-language RL stage is not "
                                                                 "implemented"),
    "trainer.find_last_checkpoint": ((True,), "longrl always resumes from the last checkpoint under "
                                              "trainer.save_checkpoint_path"),
}

# longrl key -> (its default, what is not applied)
NOT_APPLIED: dict[str, tuple[Any, str]] = {
    "worker.actor.fsdp.enable_rank0_init": (False, "every rank loads the checkpoint itself"),
    "worker.ref.fsdp.enable_rank0_init": (False, "every rank loads the checkpoint itself"),
}


def _parse_scalar(text: str) -> Any:
    """An override's value as Hydra reads it (``true`` -> True, ``0`` -> 0, ``null`` -> None, quotes dropped)."""
    try:
        return _OVERRIDE_PARSER.parse_override(f"key={text}").value()
    except HydraException:
        return text


def _render(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def upstream_overrides(overrides: Sequence[str]) -> list[str]:
    """``overrides`` with upstream keys translated, dropped (logged) or refused (one :class:`ConfigError` naming
    every refused key and why)."""
    given_keys = {override.split("=", 1)[0].lstrip("+") for override in overrides}
    translated: list[str] = []
    refused: list[str] = []
    for override in overrides:
        key, _, text = override.partition("=")
        bare = key.lstrip("+")
        if bare in RENAMED:
            target, translate = RENAMED[bare]
            translated.append(f"{target}={_render(translate(_parse_scalar(text)))}")
            if bare == "data.video_fps" and "worker.rollout.num_video_frames" not in given_keys:
                translated.append("worker.rollout.num_video_frames=null")  # sample by time, as EasyR1 does
            logger.warning("config: %s is longrl's %s", bare, target)
        elif bare in NOT_NEEDED:
            logger.warning("config: %s=%s is not needed: %s", bare, text, NOT_NEEDED[bare])
        elif bare in NOT_IMPLEMENTED:
            harmless, reason = NOT_IMPLEMENTED[bare]
            if _parse_scalar(text) not in harmless:
                refused.append(f"{bare}={text}: {reason}")
        else:
            translated.append(override)
    if refused:
        raise ConfigError("not supported by longrl:\n" + "\n".join(f"  {line}" for line in refused))
    return translated


def log_unapplied_settings(cfg: Any) -> list[str]:
    """Log (and return) each :data:`NOT_APPLIED` key of ``cfg`` set away from its default."""
    notes = []
    for key, (default, what) in NOT_APPLIED.items():
        node = cfg
        for part in key.split("."):
            node = getattr(node, part)
        if node != default:
            notes.append(f"{key}={_render(node)} is accepted but not applied: {what}")
    for note in notes:
        logger.warning("config: %s", note)
    return notes
