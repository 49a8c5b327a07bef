"""Dataset building reports its progress every so many rows or seconds, and when done."""

from __future__ import annotations

import io

from longrl.data.progress import RowProgress


def test_a_line_every_n_rows_or_seconds_and_at_the_end():
    t = [0.0]
    out = io.StringIO()
    progress = RowProgress("train.jsonl", every_rows=3, every_s=10.0, now=lambda: t[0], stream=out)
    kept = []
    for keep in (True, False, True, True):  # a line after the 3rd row
        t[0] += 1.0
        kept.append(progress.count(keep))
    t[0] += 12.0  # then the next row comes more than 10 s after that line
    progress.count(True)
    progress.finish()
    assert kept == [True, False, True, True]
    assert out.getvalue().splitlines() == [
        "dataset train.jsonl: 3 rows read, 2 kept (3.0 s)",
        "dataset train.jsonl: 5 rows read, 4 kept (16.0 s)",
        "dataset train.jsonl: 5 rows read, 4 kept (16.0 s), done",
    ]
