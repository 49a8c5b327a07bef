"""Built-in offline rewards on generated media, in the project's reward-function API.

Each is named like any user reward, ``worker.reward.reward_function=longrl.flow.rewards:colour`` (with
``worker.reward.reward_type=sequential``), with its options in ``worker.reward.reward_function_kwargs``. A user's own
function (``path/to/file.py:fn``, sequential or batch) receives the same input and returns the same score dicts.

One reward input is a :class:`MediaRewardInput`: ``media``, a float tensor in ``[0, 1]``, ``(3, H, W)`` for an image
or ``(3, F, H, W)`` for a video; ``prompt``, the prompt text; ``metadata``, the whole prompt row as read from its jsonl
file (GenEval's ``tag`` and ``include`` included). A score is ``{"overall": float, ...}``; other keys are logged.
Long-RL's diffusion reward files read the same media as ``images`` ``(3, H, W)`` or ``videos`` ``(F, 3, H, W)``, which
every input also carries (:func:`with_long_rl_media_keys`), so those files run unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypedDict

import torch

from longrl.flow.prompts import GENEVAL_RELATIONS

__all__ = ["COLOURS", "MediaRewardInput", "brightness", "colour", "colour_masks", "composition",
           "with_long_rl_media_keys"]

# Every reward here scores one sample per call.
REWARD_TYPE = "sequential"


class MediaRewardInput(TypedDict, total=False):
    media: torch.Tensor  # (3, H, W) or (3, F, H, W), float in [0, 1]
    prompt: str
    metadata: dict[str, Any]
    images: torch.Tensor  # Long-RL's name for an image: media itself
    videos: torch.Tensor  # Long-RL's layout of a video: media as (F, 3, H, W)


def with_long_rl_media_keys(reward_input: MediaRewardInput) -> MediaRewardInput:
    """``reward_input`` with its media also under Long-RL's key (``images``, or ``videos`` frame-first); views, not
    copies."""
    media = reward_input["media"]
    if media.dim() == 3:
        return {**reward_input, "images": media}
    return {**reward_input, "videos": media.transpose(0, 1)}


# The colour words of GenEval's prompts and the RGB each stands for; a pixel takes the name of the nearest one.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (1.0, 0.0, 0.0), "orange": (1.0, 0.55, 0.0), "yellow": (1.0, 1.0, 0.0), "green": (0.0, 0.7, 0.0),
    "blue": (0.0, 0.0, 1.0), "purple": (0.55, 0.0, 0.8), "pink": (1.0, 0.6, 0.75), "brown": (0.55, 0.3, 0.1),
    "black": (0.0, 0.0, 0.0), "white": (1.0, 1.0, 1.0), "gray": (0.5, 0.5, 0.5),
}


def _frames(media: torch.Tensor) -> torch.Tensor:
    """(F, 3, H, W): an image is one frame."""
    if media.dim() == 3:
        return media.unsqueeze(0)
    if media.dim() == 4:
        return media.transpose(0, 1)
    raise ValueError(f"media must be (3, H, W) or (3, F, H, W), got shape {tuple(media.shape)}")


def colour(reward_input: MediaRewardInput, target: Sequence[float] = (1.0, 0.0, 0.0)) -> dict[str, float]:
    """How close the media are to the flat colour ``target`` (RGB in ``[0, 1]``): ``1 - mean |pixel - target|``,
    1 for a frame filled with it. A reward every random generator gets a spread of, so GRPO has signal from step 1."""
    media = reward_input["media"]
    rgb = torch.tensor(list(target), dtype=media.dtype).view(3, *([1] * (media.dim() - 1)))
    return {"overall": float(1 - (media[:3] - rgb).abs().mean())}


def brightness(reward_input: MediaRewardInput, target: float | None = None) -> dict[str, float]:
    """The mean intensity in ``[0, 1]``, or with ``target`` set, ``1 - |mean intensity - target|``."""
    mean = float(reward_input["media"][:3].mean())
    return {"overall": mean if target is None else 1 - abs(mean - target), "brightness": mean}


def colour_masks(frame: torch.Tensor) -> dict[str, torch.Tensor]:
    """For each colour of :data:`COLOURS`, the (H, W) bool mask of the pixels of ``frame`` (3, H, W) nearest to it."""
    names = list(COLOURS)
    prototypes = torch.tensor([COLOURS[name] for name in names], dtype=frame.dtype)
    distance = ((frame[:3].permute(1, 2, 0).unsqueeze(2) - prototypes) ** 2).sum(-1)  # (H, W, colours)
    nearest = distance.argmin(-1)
    return {name: nearest == index for index, name in enumerate(names)}


def _centre(mask: torch.Tensor) -> tuple[float, float]:
    """(x, y) of a mask's centroid, in ``[0, 1]`` of the frame's width and height (y grows downwards)."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    height, width = mask.shape
    return float(xs.float().mean() + 0.5) / width, float(ys.float().mean() + 0.5) / height


def _relation(relation: str, a: tuple[float, float], b: tuple[float, float]) -> float:
    """How far ``a`` stands in ``relation`` to ``b``, as a score in ``[0, 1]``: 0.5 at the same place, 1 a quarter
    of the frame or more the right way, 0 as far the wrong way."""
    gap = {"left of": b[0] - a[0], "right of": a[0] - b[0], "above": b[1] - a[1], "below": a[1] - b[1]}[relation]
    return min(1.0, max(0.0, 0.5 + 2 * gap))


def composition(reward_input: MediaRewardInput, min_share: float = 0.05) -> dict[str, float]:
    """GenEval's colour and position rules, judged from colour masks (no detector: it runs anywhere, offline).

    The row's ``include`` entries say what should be there (see :mod:`longrl.flow.prompts`). Each entry with a
    ``color`` is checked for presence: the share of pixels nearest that colour, as a fraction of ``min_share``
    (capped at 1). Each entry with ``position: [relation, j]`` whose own and ``j``'s colours are named is checked by
    the centroids of the two colours' masks (:func:`_relation`; 0 when either colour is absent). Video frames are
    judged one by one and averaged. ``overall`` is the mean of all checks; ``colour`` and ``position`` are the means
    of each kind. A row with no colour in ``include`` gives nothing to judge and raises (the reward loader reports it
    with the row): use rows that name colours (GenEval's ``color_attr`` and ``colors`` tags) with this reward.
    """
    include = reward_input["metadata"].get("include") or []
    colours = [entry.get("color") for entry in include]
    if not any(colours):
        raise ValueError("the composition reward judges colours: this row's 'include' names no 'color' "
                         f"(include={include!r})")
    unknown = sorted({c for c in colours if c and c not in COLOURS})
    if unknown:
        raise ValueError(f"colour(s) {unknown} in 'include' are not among the judged colours {sorted(COLOURS)}")
    presence: list[float] = []
    positions: list[float] = []
    for frame in _frames(reward_input["media"]):
        masks = colour_masks(frame)
        pixels = frame.shape[-1] * frame.shape[-2]
        presence += [min(1.0, float(masks[c].sum()) / pixels / min_share) for c in colours if c]
        for entry, own in zip(include, colours):
            relation, other = entry.get("position", (None, None))
            if relation not in GENEVAL_RELATIONS or not own or not colours[other]:
                continue
            a, b = masks[own], masks[colours[other]]
            positions.append(_relation(relation, _centre(a), _centre(b)) if a.any() and b.any() else 0.0)
    checks = presence + positions
    score = {"overall": sum(checks) / len(checks), "colour": sum(presence) / len(presence)}
    if positions:
        score["position"] = sum(positions) / len(positions)
    return score
