"""One token per row from softmax(scores), drawn on the device without a Python loop over the rows.

Seed rule (seeded calls): sample ``k`` of prompt row ``i`` in a call seeded with ``seed`` has the 32-bit key
``mix32(mix32(lo ^ 0x243F6A88) ^ hi)``, where ``lo`` and ``hi`` are the low and high 32-bit words of
``sample_seed(seed, i, k) mod 2**64`` and ``mix32`` is the 32-bit integer hash "lowbias32" (Chris Wellons:
``x ^= x >> 16; x *= 0x7FEB352D; x ^= x >> 15; x *= 0x846CA68B; x ^= x >> 16``, arithmetic mod 2**32). Its draw at
response column ``t`` is

    a = mix32(key ^ mix32(t ^ 0x85EBCA6B)),  b = mix32(a ^ 0x68E31DA4)
    u = ((a >> 5) * 2**26 + (b >> 6)) / 2**53            (53 random bits, 0 <= u < 1)

and its token is the first index whose cumulative probability (float64 softmax of the processed scores, summed
left to right) exceeds ``u`` times the total: inverse-CDF sampling, the rule ``torch.multinomial`` applies to one
uniform number. A draw thus depends only on the sample's ``(seed, prompt, sample index)``, the column and its own
row's scores: not on which other samples share the call, so the ranks of a sequence-parallel group can split a
prompt's samples. Every operation is an integer or floating-point tensor op on the scores' device, with no host
synchronisation, so the draw can be captured in a CUDA graph.

Unseeded calls draw ``u`` from the process's random state (one batched ``torch.rand``); greedy calls take the argmax.
"""

from __future__ import annotations

import torch

from longrl.workers.rollout.sampling import sample_seed

__all__ = ["RowSampler", "mix32", "sample_key", "uniform"]

_MASK32 = 0xFFFFFFFF


def _mul32(x, constant: int):
    """``x * constant mod 2**32`` for 32-bit ``x`` (a Python int or an int64 tensor), with no intermediate at or above
    2**63: the constant is split into 16-bit halves, so tensor arithmetic never relies on signed overflow."""
    low, high = constant & 0xFFFF, constant >> 16
    return (x * low + (((x * high) & 0xFFFF) << 16)) & _MASK32


def mix32(x):
    """lowbias32, a bijective 32-bit hash, of a Python int or elementwise of an int64 tensor of 32-bit values."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def sample_key(seed: int, prompt_index: int, sample_index: int) -> int:
    """The 32-bit key of one sample's random stream (see the module docstring)."""
    value = sample_seed(seed, prompt_index, sample_index) & ((1 << 64) - 1)
    return mix32(mix32((value & _MASK32) ^ 0x243F6A88) ^ (value >> 32))


def uniform(keys: torch.Tensor, column: torch.Tensor | int) -> torch.Tensor:
    """``(rows,)`` float64 uniforms in [0, 1) of the rows' keys at response ``column`` (an int64 tensor on their
    device, or an int)."""
    step = mix32(column ^ 0x85EBCA6B)
    high = mix32(keys ^ step)
    low = mix32(high ^ 0x68E31DA4)
    return ((high >> 5) * (1 << 26) + (low >> 6)).to(torch.float64) * 2.0 ** -53


class RowSampler:
    """Draws one token per row: argmax when greedy, else by inverse CDF from the row's counter-based stream (seeded) or
    from one batched draw of the process's random state (``seed is None``). Rows are prompt ``i``'s samples
    ``first_sample .. first_sample + n - 1`` at rows ``i*n .. i*n + n - 1``. With ``columns``, the seeded uniforms of
    columns ``0 .. columns - 1`` are computed once, and a draw at a column in a tensor reads its own: one gather per
    step instead of some fifty integer kernels."""

    def __init__(self, greedy: bool, seed: int | None, batch: int, n: int, first_sample: int, device: torch.device,
                 columns: int | None = None):
        self.greedy = greedy
        self.keys = None if greedy or seed is None else torch.tensor(
            [sample_key(seed, prompt, first_sample + k) for prompt in range(batch) for k in range(n)],
            dtype=torch.int64, device=device)
        self.table = None if self.keys is None or columns is None else uniform(
            self.keys[:, None], torch.arange(columns, device=device)[None, :])  # (rows, columns)

    def __call__(self, scores: torch.Tensor, column: torch.Tensor | int) -> torch.Tensor:
        """``(rows,)`` int64 tokens drawn from ``softmax(scores)`` for response ``column``."""
        if self.greedy:
            return scores.argmax(dim=-1)
        cumulative = torch.softmax(scores.to(torch.float64), dim=-1).cumsum(dim=-1)
        if self.keys is None:
            draws = torch.rand(scores.shape[0], dtype=torch.float64, device=scores.device)
        elif self.table is not None and isinstance(column, torch.Tensor):
            draws = self.table.index_select(1, column.view(1)).squeeze(1)
        else:
            draws = uniform(self.keys, column)
        targets = draws[:, None] * cumulative[:, -1:]
        tokens = torch.searchsorted(cumulative, targets, right=True).squeeze(1)
        return tokens.clamp_(max=scores.shape[-1] - 1)
