"""Benchmark evaluation of trained model directories: ``python -m longrl.eval --model DIR --data FILE`` or
:func:`evaluate` in process (formats in :mod:`longrl.eval.benchmarks`, scoring in :mod:`longrl.eval.scoring`)."""

from longrl.eval.runner import EvalResult, evaluate, format_report

__all__ = ["EvalResult", "evaluate", "format_report"]
