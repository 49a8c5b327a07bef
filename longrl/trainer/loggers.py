"""Fan-out of step metrics and validation generations to the backends named in ``trainer.logger``.

``console`` and ``file`` need nothing beyond the standard library and are the defaults. ``tensorboard``, ``wandb``
and ``swanlab`` import their package only when selected, so a run that does not use them never needs them
installed; a missing one fails at start-up naming the extra to install, not at the first log call hours later.
wandb and swanlab take their online/offline mode from their own environment variables (``WANDB_MODE=offline``,
``SWANLAB_MODE=offline``/``local``), so a cluster without internet access keeps its runs locally for a later sync.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol, TextIO

from longrl.trainer.progress import StepProgress

METRICS_FILE = "metrics.jsonl"
GENERATIONS_FILE = "generations.jsonl"


@dataclass(frozen=True)
class Generation:
    """One validation sample as shown in the generations table."""

    input: str
    output: str
    ground_truth: str
    score: float


class Backend(Protocol):
    def log(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_generations(self, generations: Sequence[Generation], step: int) -> None: ...

    def close(self) -> None: ...


def import_backend(module: str, backend: str, extra: str) -> ModuleType:
    """Import a tracker's package, or explain which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as error:
        raise ImportError(
            f"trainer.logger includes {backend!r}, which needs the {module.split('.')[0]!r} package: "
            f"pip install 'longrl[{extra}]' (or drop {backend!r} from trainer.logger)"
        ) from error


def plain_config(config: Any) -> dict[str, Any]:
    """The run config as nested plain dicts, which is what trackers store: a dataclass tree (``RootConfig``), an
    OmegaConf node or a mapping."""
    if is_dataclass(config) and not isinstance(config, type):
        return asdict(config)
    if type(config).__module__.startswith("omegaconf"):
        from omegaconf import OmegaConf

        return OmegaConf.to_container(config, resolve=True)
    return dict(config)


def _finite_or_none(value: float) -> float | None:
    """JSON has no NaN/inf; a non-finite metric is written as null (the console still shows it)."""
    return value if math.isfinite(value) else None


class ConsoleBackend:
    """One short line per step (:class:`StepProgress`: ``step N/T``, elapsed, ETA, headline numbers), flushed, so a
    terminal and a Slurm log read alike; the full set of metrics goes to the ``file`` backend."""

    def __init__(self, total_steps: int | None = None, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.progress = StepProgress(total_steps)

    def _out(self) -> TextIO:
        return self.stream or sys.stdout

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        print(self.progress.line(step, metrics), file=self._out(), flush=True)

    def log_generations(self, generations: Sequence[Generation], step: int) -> None:
        for generation in generations:
            print(f"[step {step}] [input] {generation.input}\n[output] {generation.output}\n"
                  f"[ground_truth] {generation.ground_truth}\n[score] {generation.score:.4g}",
                  file=self._out(), flush=True)

    def close(self) -> None:
        pass


class FileBackend:
    """``metrics.jsonl`` (one object per step, with ``step``) and ``generations.jsonl`` (one object per sample).

    Files are appended to, so a resumed run continues them; steps logged after the last checkpoint of a crashed
    run appear twice, and the later line is the one from the resumed run.
    """

    def __init__(self, log_dir: str | Path) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._metrics = open(self.log_dir / METRICS_FILE, "a")
        self._generations = open(self.log_dir / GENERATIONS_FILE, "a")

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        record = {"step": step, **{key: _finite_or_none(value) for key, value in metrics.items()}}
        self._metrics.write(json.dumps(record) + "\n")
        self._metrics.flush()

    def log_generations(self, generations: Sequence[Generation], step: int) -> None:
        for generation in generations:
            record = {"step": step, **asdict(generation), "score": _finite_or_none(generation.score)}
            self._generations.write(json.dumps(record) + "\n")
        self._generations.flush()

    def close(self) -> None:
        self._metrics.close()
        self._generations.close()


class TensorBoardBackend:
    """Scalars and a text table per validation under ``log_dir/tensorboard``."""

    def __init__(self, log_dir: str | Path) -> None:
        module = import_backend("torch.utils.tensorboard", "tensorboard", "tensorboard")
        self.writer = module.SummaryWriter(log_dir=str(Path(log_dir) / "tensorboard"))

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def log_generations(self, generations: Sequence[Generation], step: int) -> None:
        rows = ["| input | output | ground_truth | score |", "|---|---|---|---|"]
        rows += [f"| {g.input} | {g.output} | {g.ground_truth} | {g.score:.4g} |" for g in generations]
        self.writer.add_text("val/generations", "\n".join(rows), step)

    def close(self) -> None:
        self.writer.close()


class WandbBackend:
    """A wandb run; validation generations accumulate in one table re-logged each time (wandb tables are
    immutable once logged, so appending means logging a new table with all rows so far)."""

    COLUMNS = ["step", "input", "output", "ground_truth", "score"]

    def __init__(self, project: str, experiment: str, config: Any, log_dir: str | Path) -> None:
        self.wandb = import_backend("wandb", "wandb", "wandb")
        self.run = self.wandb.init(project=project, name=experiment, config=plain_config(config), dir=str(log_dir))
        self._rows: list[list[Any]] = []

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log(dict(metrics), step=step)

    def log_generations(self, generations: Sequence[Generation], step: int) -> None:
        self._rows += [[step, g.input, g.output, g.ground_truth, g.score] for g in generations]
        self.run.log({"val/generations": self.wandb.Table(columns=self.COLUMNS, data=list(self._rows))}, step=step)

    def close(self) -> None:
        self.run.finish()


class SwanlabBackend:
    """A swanlab run; generations are logged as text items, one per sample."""

    def __init__(self, project: str, experiment: str, config: Any, log_dir: str | Path) -> None:
        self.swanlab = import_backend("swanlab", "swanlab", "swanlab")
        self.swanlab.init(project=project, experiment_name=experiment, config=plain_config(config),
                          logdir=str(Path(log_dir) / "swanlog"))

    def log(self, metrics: Mapping[str, float], step: int) -> None:
        self.swanlab.log(dict(metrics), step=step)

    def log_generations(self, generations: Sequence[Generation], step: int) -> None:
        texts = [self.swanlab.Text(f"{g.input}\n\n{g.output}", caption=f"ground truth {g.ground_truth}, score "
                                   f"{g.score:.4g}") for g in generations]
        self.swanlab.log({"val/generations": texts}, step=step)

    def close(self) -> None:
        self.swanlab.finish()


BACKENDS = ("console", "file", "tensorboard", "wandb", "swanlab")


class Tracker:
    """Send every step's metrics and every validation's generations to each configured backend."""

    def __init__(
        self,
        backends: Sequence[str],
        project: str,
        experiment: str,
        config: Any,
        log_dir: str | Path,
        total_steps: int | None = None,
    ) -> None:
        unknown = [name for name in backends if name not in BACKENDS]
        if unknown:
            raise ValueError(f"trainer.logger has unknown backend(s) {unknown}; choose from {list(BACKENDS)}")
        factories = {
            "console": lambda: ConsoleBackend(total_steps),
            "file": lambda: FileBackend(log_dir),
            "tensorboard": lambda: TensorBoardBackend(log_dir),
            "wandb": lambda: WandbBackend(project, experiment, config, log_dir),
            "swanlab": lambda: SwanlabBackend(project, experiment, config, log_dir),
        }
        self.backends: dict[str, Backend] = {}
        try:
            for name in dict.fromkeys(backends):
                self.backends[name] = factories[name]()
        except BaseException:
            self.close()
            raise

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Metric values may be floats, ints or 0-d tensors; they are logged as floats."""
        values = {key: float(value) for key, value in metrics.items()}
        for backend in self.backends.values():
            backend.log(values, step)

    def log_generations(self, generations: Sequence[Generation], step: int) -> None:
        for backend in self.backends.values():
            backend.log_generations(generations, step)

    def close(self) -> None:
        for backend in self.backends.values():
            backend.close()
        self.backends = {}
