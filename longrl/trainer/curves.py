"""PNG curves of a finished run, drawn from its metrics file into its log directory.

One figure per quantity a reader checks first (reward, accuracy, response length, KL, entropy, loss, step time), one
point per step; a quantity the run did not log (KL with ``disable_kl``, reward in SFT) gets no figure. The numbers
each figure is drawn from are written beside it (``curves.json``), so a script or a test reads exactly what was
plotted. Figures are drawn with matplotlib's object API (no pyplot), so no display and no global state are needed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CURVES_DIR = "curves"
SIDECAR = "curves.json"


@dataclass(frozen=True)
class Curve:
    """A figure: its file stem, its y-axis label and the metric keys drawn on it (the first present of
    ``train_keys`` as the training series, ``val_key`` as the validation points)."""

    name: str
    label: str
    train_keys: tuple[str, ...]
    val_key: str | None = None


CURVES = (
    Curve("reward", "reward (mean score)", ("critic/score/mean",), "val/reward"),
    Curve("accuracy", "accuracy (fraction right)", ("critic/accuracy/mean",), "val/accuracy"),
    Curve("response_length", "response length (tokens)", ("response_length/mean",)),
    Curve("kl", "KL to the reference", ("actor/kl_loss", "critic/kl")),
    Curve("entropy", "entropy (nats per token)", ("actor/entropy",)),
    Curve("loss", "SFT loss", ("sft/loss",), "val/sft_loss"),
    Curve("step_time", "step time (s)", ("timing_s/step",)),
)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The metrics file's records, one per step in step order; for a step logged twice (a run resumed from an
    earlier checkpoint), the later record."""
    by_step: dict[int, dict[str, Any]] = {}
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number} is not a JSON line: {error}") from error
            by_step[int(record["step"])] = record
    return [by_step[step] for step in sorted(by_step)]


def _series(records: Sequence[Mapping[str, Any]], key: str) -> dict[str, list[float]]:
    """Steps and values of ``key`` over the records that hold a finite value for it."""
    points = [(int(r["step"]), float(r[key])) for r in records
              if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
    return {"steps": [step for step, _ in points], "values": [value for _, value in points]}


def curve_data(records: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{curve name: {"label", "series": {metric key: {"steps", "values"}}}}`` for each curve whose training
    metric the records hold (step 0, the validation before training, only adds validation points)."""
    trained = [r for r in records if int(r["step"]) > 0]
    data: dict[str, dict[str, Any]] = {}
    for curve in CURVES:
        key = next((k for k in curve.train_keys if any(k in r for r in trained)), None)
        if key is None:
            continue
        series = {key: _series(trained, key)}
        if curve.val_key is not None:
            val = _series(records, curve.val_key)
            if val["steps"]:
                series[curve.val_key] = val
        data[curve.name] = {"label": curve.label, "series": series}
    return data


def draw(name: str, curve: Mapping[str, Any], path: Path) -> None:
    """One PNG: the training series as a line with a marker per step, validation points as larger markers."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(6.4, 3.6))
    figure.subplots_adjust(left=0.13, right=0.97, bottom=0.14, top=0.9)  # fixed margins: a layout engine costs 2x
    axes = figure.add_subplot()
    for index, (key, points) in enumerate(curve["series"].items()):
        style = {"marker": "o", "markersize": 3, "linewidth": 1} if index == 0 else {"marker": "s", "linestyle": "--"}
        axes.plot(points["steps"], points["values"], label=key, **style)
    axes.set_xlabel("step")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps are whole numbers
    axes.set_ylabel(curve["label"])
    axes.set_title(name.replace("_", " "))
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    figure.savefig(path, dpi=100)


def plot_curves(metrics_path: str | Path, out_dir: str | Path) -> list[Path]:
    """Draw the run's curves from ``metrics_path`` into ``out_dir`` (with ``curves.json``); the PNG paths."""
    records = read_metrics(metrics_path)
    data = curve_data(records)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, curve in data.items():
        path = out / f"{name}.png"
        draw(name, curve, path)
        curve["png"] = path.name
        paths.append(path)
    (out / SIDECAR).write_text(json.dumps(data, indent=1) + "\n")
    return paths


def report_curves(log_dir: str | Path) -> list[Path]:
    """Plot a finished run's curves into ``log_dir/curves`` and print their paths (or why there are none)."""
    metrics = Path(log_dir) / "metrics.jsonl"
    if not metrics.is_file():
        print(f"curves: none, {metrics} was not written (add 'file' to trainer.logger)")
        return []
    paths = plot_curves(metrics, Path(log_dir) / CURVES_DIR)
    for path in paths:
        print(f"curve: {path}")
    return paths


def plot_stage_accuracy(accuracy: Mapping[str, float], out_dir: str | Path) -> Path:
    """The pipeline's test accuracy per stage (base, sft, rl) as one bar chart, with the numbers in
    ``test_accuracy.json`` beside it; the PNG's path."""
    from matplotlib.figure import Figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    figure = Figure(figsize=(4.8, 3.6))
    figure.subplots_adjust(left=0.15, right=0.97, bottom=0.1, top=0.9)
    axes = figure.add_subplot()
    stages, values = list(accuracy), [float(v) for v in accuracy.values()]
    bars = axes.bar(stages, values)
    axes.bar_label(bars, fmt="%.3f")
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("test accuracy")
    axes.set_title("test accuracy by stage")
    path = out / "test_accuracy.png"
    figure.savefig(path, dpi=100)
    (out / "test_accuracy.json").write_text(json.dumps({"stages": stages, "accuracy": values}) + "\n")
    return path
