"""The batch container passed between the Ray controller and its workers.

A training step moves one batch of samples through several workers (rollout, reference, actor, reward).
Each hop needs the same few things: cut the batch into per-worker shares and glue the results back,
repeat prompts for ``n`` rollouts, pad to a multiple of the data-parallel size, keep only the keys a
worker needs, and survive pickling through Ray's object store.

A :class:`Batch` holds three parts:

* ``tensors`` -- a :class:`tensordict.TensorDict` of batch-first tensors sharing one first dimension
  (token ids, masks, log-probs, rewards). TensorDict gives batched indexing and device moves for free.
* ``non_tensors`` -- per-sample numpy arrays with the same first dimension. Object arrays carry
  variable-size things a tensor cannot: per-sample video tensors of different shapes, strings,
  uids, dicts.
* ``meta`` -- a plain dict carried along untouched by row operations (timings, config bits).

Row operations share storage where they can (slices are views; repeated or padded rows reference the
same per-sample objects), so a long video tensor is never copied for its ``n`` rollouts. Treat rows as
read-only, or copy before mutating in place (numeric numpy arrays come back read-only from
``ray.get`` anyway). ``meta`` is shallow-copied into every derived batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Union

import numpy as np
import torch
from tensordict import TensorDict

# The keys of a step's batch, declared once: each is written by one room and read by others.

# Per-token inputs (one value per prompt/response position), as the data layer, the rollout engines and the actor all
# lay them out: left-padded over the prompt, joined with the response columns.
INPUT_IDS = "input_ids"
ATTENTION_MASK = "attention_mask"
MM_TOKEN_TYPE_IDS = "mm_token_type_ids"  # marks the vision tokens, for families whose processor gives it
TOKEN_KEYS = (INPUT_IDS, ATTENTION_MASK, MM_TOKEN_TYPE_IDS)

# Tensors of a generated (or, for SFT, target) batch.
PROMPTS = "prompts"  # the prompt's token ids, left-padded
RESPONSES = "responses"  # the response's token ids, right-padded
RESPONSE_MASK = "response_mask"  # 1 over each response up to and including its end-of-turn token
ROLLOUT_LOG_PROBS = "rollout_log_probs"  # the rollout engine's log-probs of the response tokens
OLD_LOG_PROBS = "old_log_probs"  # the policy's log-probs before this step's update
REF_LOG_PROBS = "ref_log_probs"  # the frozen reference's log-probs
ENTROPY = "entropy"  # the policy's per-token entropy, from the old log-prob pass
SCORES = "scores"  # each response's reward; its parts (format, accuracy, ...) are non-tensors "score_<part>"
SCORE_PART_PREFIX = "score_"
TOKEN_LEVEL_SCORES = "token_level_scores"  # each response's reward, on its last token
TOKEN_LEVEL_REWARDS = "token_level_rewards"  # the scores less the KL penalty, when KL is a reward penalty
ADVANTAGES = "advantages"
RETURNS = "returns"

# Per-row fields. UID: the prompt's id, shared by its n responses (groups are found by it, never by position).
UID = "uid"
QUESTION = "question"
OPTIONS = "options"  # the choices of a multiple-choice row, None for an open-ended one
ANSWER = "answer"
REASONING = "reasoning"  # the row's reasoning trace, if any (the SFT target's body)
TASK = "task"
VIDEO_PATH = "video_path"
ROW_FIELDS = (UID, QUESTION, OPTIONS, ANSWER, REASONING, TASK, VIDEO_PATH)  # what every data row carries
VISION_INPUTS = "vision_inputs"  # the model family's per-row vision tensors (pixels, grids), as its adapter made them
TIMESTAMPS = "timestamps"  # the sampled frames' times in seconds, None for a row without video
TARGET_IDS = "target_ids"  # the SFT target's token ids, ending with the end-of-turn token
# VIDEO_EMBEDS: the row's video features (MR-SP stage 1's output, or the embedding cache's entry), None for a row
# without them; once set it travels with the row for the whole step, so no later pass runs the vision tower again.
VIDEO_EMBEDS = "video_embeds"
# EMBED_ENTRY: (key, description) of the row's embedding-cache entry, None for a row without video or without a cache.
EMBED_ENTRY = "embed_entry"

__all__ = [
    "ADVANTAGES", "ANSWER", "ATTENTION_MASK", "Batch", "EMBED_ENTRY", "ENTROPY", "INPUT_IDS", "MM_TOKEN_TYPE_IDS",
    "OLD_LOG_PROBS", "OPTIONS", "PROMPTS", "QUESTION", "REASONING", "REF_LOG_PROBS", "RESPONSES", "RESPONSE_MASK",
    "RETURNS", "ROLLOUT_LOG_PROBS", "ROW_FIELDS", "SCORES", "SCORE_PART_PREFIX", "TARGET_IDS", "TASK", "TIMESTAMPS",
    "TOKEN_KEYS", "TOKEN_LEVEL_REWARDS", "TOKEN_LEVEL_SCORES", "UID", "VIDEO_EMBEDS", "VIDEO_PATH", "VISION_INPUTS",
]

Index = Union[int, slice, Sequence[int], Sequence[bool], np.ndarray, torch.Tensor]


class Batch:
    """Batch-first tensors + per-sample numpy arrays + a meta dict, all rows aligned.

    Build one with :meth:`from_dict`; the constructor takes already-built parts and validates them.
    """

    def __init__(
        self,
        tensors: TensorDict,
        non_tensors: Mapping[str, np.ndarray] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(tensors, TensorDict):
            raise TypeError(
                f"tensors must be a TensorDict, got {type(tensors).__name__}; build from dicts with Batch.from_dict"
            )
        if tensors.batch_dims != 1:
            raise ValueError(f"tensors must have one batch dimension, got batch_size={tuple(tensors.batch_size)}")
        self.tensors = tensors
        self.non_tensors = dict(non_tensors or {})
        self.meta = dict(meta or {})
        size = len(self)
        for key, value in self.non_tensors.items():
            if not isinstance(value, np.ndarray) or value.ndim == 0:
                raise TypeError(
                    f"non_tensors[{key!r}] must be a numpy array with a batch dimension, got {type(value).__name__}"
                )
            if value.shape[0] != size:
                raise ValueError(f"non_tensors[{key!r}] has batch size {value.shape[0]}, but the tensors have {size}")

    # ------------------------------------------------------------------ building

    @classmethod
    def from_dict(
        cls,
        tensors: Mapping[str, torch.Tensor] | None = None,
        non_tensors: Mapping[str, Any] | None = None,
        meta: Mapping[str, Any] | None = None,
        batch_size: int | None = None,
    ) -> Batch:
        """Build a batch from plain dicts, checking every entry has the same batch size.

        Lists/tuples in ``non_tensors`` become 1-D object arrays element by element, so a list of
        differently shaped video tensors stays a list of tensors (numpy would otherwise try to stack
        them). Numpy arrays are kept as given. ``batch_size`` is needed only when there are no entries.
        """
        tensors = dict(tensors or {})
        arrays = {key: _as_sample_array(key, value) for key, value in (non_tensors or {}).items()}
        sizes: list[tuple[str, int]] = []
        for key, value in tensors.items():
            if not isinstance(key, str):
                raise TypeError(f"tensor keys must be strings, got {key!r}")
            if not isinstance(value, torch.Tensor) or value.dim() == 0:
                raise TypeError(
                    f"tensors[{key!r}] must be a torch.Tensor with a batch dimension, got {type(value).__name__}"
                )
            sizes.append((f"tensors[{key!r}]", value.shape[0]))
        sizes.extend((f"non_tensors[{key!r}]", value.shape[0]) for key, value in arrays.items())
        if batch_size is not None:
            sizes.insert(0, ("batch_size", batch_size))
        if not sizes:
            raise ValueError("cannot infer the batch size of an empty batch: pass batch_size=")
        first_name, size = sizes[0]
        for name, other in sizes[1:]:
            if other != size:
                raise ValueError(f"{name} has batch size {other}, but {first_name} has {size}")
        return cls(TensorDict(tensors, batch_size=[size]), arrays, meta)

    # ------------------------------------------------------------------ inspection

    def __len__(self) -> int:
        return int(self.tensors.batch_size[0])

    def __repr__(self) -> str:
        tensors = ", ".join(f"{k}: {tuple(v.shape)} {v.dtype}" for k, v in self.tensors.items())
        arrays = ", ".join(f"{k}: {v.shape} {v.dtype}" for k, v in self.non_tensors.items())
        return f"Batch(len={len(self)}, tensors={{{tensors}}}, non_tensors={{{arrays}}}, meta_keys={list(self.meta)})"

    # ------------------------------------------------------------------ row operations

    def __getitem__(self, index: Index) -> Batch:
        """Rows by int, slice, index array or bool mask, tensors and non-tensors alike.

        Always returns a :class:`Batch` (an int gives one row, batch dimension kept), so every
        result can go through the same operations and over the same wire.
        """
        rows = _normalize_index(index, len(self))
        tensor_rows = rows if isinstance(rows, slice) else torch.from_numpy(rows)
        return Batch(
            self.tensors[tensor_rows],
            {key: value[rows] for key, value in self.non_tensors.items()},
            self.meta,
        )

    def select(self, tensor_keys: Sequence[str] | None = None, non_tensor_keys: Sequence[str] | None = None) -> Batch:
        """Keep only the keys a worker needs, so big unneeded entries are not shipped to it.

        ``None`` keeps every key of that kind; an empty list keeps none. ``meta`` is kept whole.
        """
        if tensor_keys is None:
            tensor_keys = list(self.tensors.keys())
        if non_tensor_keys is None:
            non_tensor_keys = list(self.non_tensors)
        _check_keys("tensor", tensor_keys, list(self.tensors.keys()))
        _check_keys("non-tensor", non_tensor_keys, list(self.non_tensors))
        return Batch(
            TensorDict({key: self.tensors[key] for key in tensor_keys}, batch_size=self.tensors.batch_size),
            {key: self.non_tensors[key] for key in non_tensor_keys},
            self.meta,
        )

    def split(self, size: int) -> list[Batch]:
        """Consecutive pieces of ``size`` rows (the last may be smaller): micro-batches for a worker."""
        if size <= 0:
            raise ValueError(f"split size must be positive, got {size}")
        return [self[start : start + size] for start in range(0, len(self), size)]

    def chunk(self, n: int) -> list[Batch]:
        """``n`` consecutive parts whose sizes differ by at most one: one share per worker.

        The first ``len % n`` parts get the extra row. Every part is non-empty, so ``n > len`` raises.
        """
        if n <= 0:
            raise ValueError(f"number of chunks must be positive, got {n}")
        if n > len(self):
            raise ValueError(f"cannot chunk a batch of {len(self)} rows into {n} non-empty parts")
        base, extra = divmod(len(self), n)
        parts, start = [], 0
        for i in range(n):
            stop = start + base + (1 if i < extra else 0)
            parts.append(self[start:stop])
            start = stop
        return parts

    @staticmethod
    def concat(batches: Sequence[Batch]) -> Batch:
        """Glue batches row-wise (the inverse of ``chunk``/``split``): collecting worker outputs.

        All batches must have the same tensor and non-tensor keys. ``meta`` dicts are merged as in
        :meth:`union` (a key with different values in two batches raises).
        """
        if not batches:
            raise ValueError("concat needs at least one batch")
        first = batches[0]
        for position, batch in enumerate(batches[1:], start=1):
            _check_same_keys("tensor", list(first.tensors.keys()), list(batch.tensors.keys()), position)
            _check_same_keys("non-tensor", list(first.non_tensors), list(batch.non_tensors), position)
        tensors = {
            key: _concat_entry("tensors", key, [b.tensors[key] for b in batches], torch.cat)
            for key in first.tensors.keys()
        }
        arrays = {
            key: _concat_entry("non_tensors", key, [b.non_tensors[key] for b in batches], np.concatenate)
            for key in first.non_tensors
        }
        meta: dict[str, Any] = {}
        for batch in batches:
            meta = _merge_meta(meta, batch.meta)
        total = sum(len(b) for b in batches)
        return Batch(TensorDict(tensors, batch_size=[total]), arrays, meta)

    def repeat(self, n: int, interleave: bool = True) -> Batch:
        """Each row ``n`` times: the prompt layout for ``n`` rollouts per prompt.

        ``interleave=True`` gives ``[a, a, b, b]`` (a prompt's rollouts contiguous);
        ``interleave=False`` tiles the whole batch, ``[a, b, a, b]``.
        Repeated non-tensor objects are shared, not copied.
        """
        if n <= 0:
            raise ValueError(f"repeat count must be positive, got {n}")
        rows = np.arange(len(self))
        return self[np.repeat(rows, n) if interleave else np.tile(rows, n)]

    def with_non_tensors(self, **entries: Any) -> Batch:
        """The same rows with the non-tensor ``entries`` added or replaced (lists become object arrays)."""
        arrays = {key: _as_sample_array(key, value) for key, value in entries.items()}
        return Batch(self.tensors, {**self.non_tensors, **arrays}, self.meta)

    def without_non_tensors(self, *keys: str) -> Batch:
        """The same rows without the non-tensor ``keys`` (absent keys are ignored)."""
        return Batch(self.tensors, {k: v for k, v in self.non_tensors.items() if k not in keys}, self.meta)

    def union(self, other: Batch) -> Batch:
        """Merge the keys of two batches over the same rows, e.g. a worker's outputs into its inputs.

        A key present in both must hold equal values (same shape, dtype and contents); a conflicting key
        raises, so one worker's result never silently overwrites another's. Returns a new batch.
        """
        if len(self) != len(other):
            raise ValueError(f"cannot union batches of {len(self)} and {len(other)} rows")
        tensors = dict(self.tensors.items())
        for key, value in other.tensors.items():
            if key in tensors and not _values_equal(tensors[key], value):
                raise ValueError(f"union conflict: tensors[{key!r}] differs between the two batches")
            tensors[key] = value
        arrays = dict(self.non_tensors)
        for key, value in other.non_tensors.items():
            if key in arrays and not _values_equal(arrays[key], value):
                raise ValueError(f"union conflict: non_tensors[{key!r}] differs between the two batches")
            arrays[key] = value
        return Batch(TensorDict(tensors, batch_size=[len(self)]), arrays, _merge_meta(self.meta, other.meta))

    def pad_to_multiple(self, k: int) -> tuple[Batch, int]:
        """Pad to a multiple of ``k`` rows (e.g. the data-parallel size) so every worker gets a share.

        The padding repeats existing rows from the start, so padded rows are valid model inputs, not
        zeros that could break a forward pass. Returns ``(padded, pad_size)``; undo with :meth:`unpad`.
        """
        if k <= 0:
            raise ValueError(f"pad multiple must be positive, got {k}")
        pad_size = -len(self) % k
        if pad_size == 0:
            return self[:], 0
        return Batch.concat([self, self[np.arange(pad_size) % len(self)]]), pad_size

    def unpad(self, pad_size: int) -> Batch:
        """Drop the ``pad_size`` rows that :meth:`pad_to_multiple` appended."""
        if not 0 <= pad_size <= len(self):
            raise ValueError(f"pad_size must be in [0, {len(self)}], got {pad_size}")
        return self[: len(self) - pad_size]

    def to(self, device: torch.device | str) -> Batch:
        """Move the tensors to ``device``. Non-tensors stay where they are (objects inside an object
        array, e.g. per-sample videos, are moved by the worker that uses them)."""
        return Batch(self.tensors.to(device), self.non_tensors, self.meta)


# ---------------------------------------------------------------------- helpers


def _as_sample_array(key: str, value: Any) -> np.ndarray:
    """A per-sample numpy array; lists become object arrays one element per sample."""
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            raise TypeError(f"non_tensors[{key!r}] is a 0-d array; it needs a batch dimension")
        return value
    if isinstance(value, (list, tuple)):
        array = np.empty(len(value), dtype=object)
        for i, item in enumerate(value):
            array[i] = item
        return array
    raise TypeError(f"non_tensors[{key!r}] must be a numpy array, list or tuple, got {type(value).__name__}")


def _normalize_index(index: Index, size: int) -> slice | np.ndarray:
    """A positive-step slice (kept, so rows stay views) or an int64 row-index array."""
    if isinstance(index, slice):
        if index.step is None or index.step > 0:
            return index
        return np.arange(*index.indices(size), dtype=np.int64)
    if isinstance(index, (int, np.integer)) and not isinstance(index, bool):
        if not -size <= index < size:
            raise IndexError(f"row {index} is out of range for a batch of {size} rows")
        return np.array([index % size], dtype=np.int64)
    rows = index.cpu().numpy() if isinstance(index, torch.Tensor) else np.asarray(index)
    if rows.ndim != 1:
        raise IndexError(f"an index array must be 1-D, got shape {rows.shape}")
    if rows.dtype == np.bool_:
        if rows.shape[0] != size:
            raise IndexError(f"a bool mask must have one entry per row ({size}), got {rows.shape[0]}")
        return np.flatnonzero(rows)
    if rows.size == 0:
        return rows.astype(np.int64)
    if not np.issubdtype(rows.dtype, np.integer):
        raise IndexError(f"index arrays must hold ints or bools, got dtype {rows.dtype}")
    if rows.min() < -size or rows.max() >= size:
        raise IndexError(f"index array has rows out of range for a batch of {size} rows")
    return rows.astype(np.int64) % max(size, 1)


def _check_keys(kind: str, wanted: Sequence[str], available: list[str]) -> None:
    missing = [key for key in wanted if key not in available]
    if missing:
        raise KeyError(f"no {kind} key(s) {missing}; available: {available}")


def _check_same_keys(kind: str, first: list[str], other: list[str], position: int) -> None:
    missing, extra = sorted(set(first) - set(other)), sorted(set(other) - set(first))
    if missing or extra:
        raise KeyError(f"concat: batch {position} {kind} keys differ from batch 0 (missing {missing}, extra {extra})")


def _concat_entry(kind: str, key: str, values: list[Any], cat: Any) -> Any:
    try:
        return cat(values)
    except (RuntimeError, ValueError) as error:
        shapes = [tuple(v.shape) for v in values]
        raise ValueError(f"concat: cannot join {kind}[{key!r}] with shapes {shapes}: {error}") from error


def _merge_meta(left: Mapping[str, Any], right: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(left)
    for key, value in right.items():
        if key in merged and not _values_equal(merged[key], value):
            raise ValueError(f"meta conflict: meta[{key!r}] is {merged[key]!r} in one batch and {value!r} in another")
        merged[key] = value
    return merged


def _values_equal(a: Any, b: Any) -> bool:
    """Exact equality that also works inside object arrays and dicts holding tensors."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and torch.equal(a.cpu(), b.cpu())
        )
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)) or a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.dtype == object:
            return all(_values_equal(x, y) for x, y in zip(a.ravel(), b.ravel()))
        return bool(np.array_equal(a, b))
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        return (
            isinstance(a, Mapping)
            and isinstance(b, Mapping)
            and a.keys() == b.keys()
            and all(_values_equal(a[k], b[k]) for k in a)
        )
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_values_equal(x, y) for x, y in zip(a, b))
    return bool(a == b)
