"""The pipeline's configuration: one typed tree, read from a YAML file plus ``key=value`` overrides.

Every model, endpoint, prompt, threshold and seed lives here rather than in the step code, so a run is described by
its config file alone. The tree is an OmegaConf structured config, which is what turns a misspelt key or a wrong
type into an error at start instead of a silently ignored value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

PROMPTS_DIR = Path(__file__).resolve().parents[1] / "prompts"
STEP_NAMES = ("segment", "caption", "generate", "refine", "filter", "split")
ROLES = ("captioner", "generator", "refiner", "solver", "rollout")


@dataclass
class ModelConfig:
    """How one role reaches its model: an OpenAI-compatible endpoint, or a local directory loaded in-process."""

    backend: str = "openai"  # "openai" | "local"
    model: Optional[str] = None  # the served model name (openai) or a Hugging Face model directory (local)
    base_url: Optional[str] = None  # openai: default $OPENAI_BASE_URL
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable per request, never stored
    timeout_s: float = 120.0
    max_retries: int = 3
    backoff_s: float = 2.0
    max_concurrency: int = 8  # openai: requests in flight at once
    batch_size: int = 8  # local: requests per engine call
    extra_body: dict[str, Any] = field(default_factory=dict)  # openai: extra request fields (top_p, logit_bias, ...)
    # Video roles: frames sampled per clip or video (openai: sent as images; local: the model's frame count).
    num_frames: int = 8
    max_pixels: int = 448 * 448
    image_format: str = "jpeg"  # openai: "jpeg" | "png"


@dataclass
class ModelsConfig:
    captioner: ModelConfig = field(default_factory=ModelConfig)  # a VLM: one caption per clip
    generator: ModelConfig = field(default_factory=ModelConfig)  # an LLM: questions, answers, distractors, reasoning
    refiner: ModelConfig = field(default_factory=ModelConfig)  # an LLM: reasoning rewritten as a viewing trace
    solver: ModelConfig = field(default_factory=ModelConfig)  # an LLM: answers from captions (filters a and b)
    rollout: ModelConfig = field(default_factory=ModelConfig)  # a VLM: answers from the video (filter c)


@dataclass
class SegmentConfig:
    clip_seconds: float = 10.0  # Long-RL cuts its videos into clips of about ten seconds
    min_clip_seconds: float = 0.0  # a last clip shorter than this joins the clip before it
    extensions: list[str] = field(default_factory=lambda: [".mp4", ".mkv", ".webm", ".mov", ".avi"])


@dataclass
class CaptionConfig:
    prompt: str = "caption.jinja"
    max_tokens: int = 256
    temperature: float = 0.0


@dataclass
class FieldConfig:
    """One field of a generated item: its prompt and reply length."""

    prompt: str = "???"
    max_tokens: int = 256


@dataclass
class ReasoningType:
    name: str = "???"
    description: str = "???"


def _default_types() -> list[ReasoningType]:
    return [
        ReasoningType("temporal", "the order, timing or duration of events and how they change over the video"),
        ReasoningType("goal_and_purpose", "why people act as they do: their goals, intentions and plans"),
        ReasoningType("spatial", "where people and objects are, how they move and how their positions relate"),
        ReasoningType("plot_and_narrative", "the storyline: causes, consequences and how the story develops"),
    ]


@dataclass
class GenerateConfig:
    """Items are written one field per request and their options are assembled in code (see ``generate.py``)."""

    types: list[ReasoningType] = field(default_factory=_default_types)
    num_options: int = 4  # the correct answer plus num_options - 1 distractors
    temperature: float = 0.0
    question: FieldConfig = field(default_factory=lambda: FieldConfig("question.jinja", 256))
    answer: FieldConfig = field(default_factory=lambda: FieldConfig("answer.jinja", 128))
    distractor: FieldConfig = field(default_factory=lambda: FieldConfig("distractor.jinja", 128))
    reasoning: FieldConfig = field(default_factory=lambda: FieldConfig("reasoning.jinja", 1024))


@dataclass
class RefineConfig:
    prompt: str = "refine.jinja"
    max_tokens: int = 2048
    temperature: float = 0.0
    # Accept a rewritten trace only when the choice it concludes with is the item's answer.
    require_answer: bool = True


@dataclass
class AnswerableConfig:
    """Filter (a): the solver, given every caption, must answer correctly."""

    enabled: bool = True
    prompt: str = "solve.jinja"
    max_tokens: int = 1024
    temperature: float = 0.0


@dataclass
class SingleClipConfig(AnswerableConfig):
    """Filter (b): the solver, given one clip's caption at a time, must mostly fail."""

    # Keep an item when the fraction of clips whose caption alone answers it is <= this: 0.0 demands that every
    # clip fail; 0.49 that most clips fail.
    max_accuracy: float = 0.0


@dataclass
class RolloutFilterConfig:
    """Filter (c): the rollout VLM answers ``n`` times on the video; keep ``low < accuracy < high``."""

    enabled: bool = True
    prompt: str = "rollout.jinja"
    max_tokens: int = 1024
    n: int = 8
    temperature: float = 1.0
    low: float = 0.0
    high: float = 1.0


@dataclass
class FilterConfig:
    answerable: AnswerableConfig = field(default_factory=AnswerableConfig)
    single_clip: SingleClipConfig = field(default_factory=SingleClipConfig)
    rollout: RolloutFilterConfig = field(default_factory=RolloutFilterConfig)


@dataclass
class SplitConfig:
    # Fraction of the kept items that go to SFT, drawn (seeded) from those with a refined trace; the rest go to RL.
    # LongVideo-Reason's published split is about 36K CoT-SFT items of 104K.
    sft_ratio: float = 0.35
    # Write the lettered options into ``problem`` and leave ``options`` out, as LongVideo-Reason's own files do (for
    # trainers that do not read an options field); by default ``options`` is a list longrl's format prompt letters.
    inline_options: bool = False


@dataclass
class PipelineConfig:
    videos_dir: str = "???"  # the long videos; dataset rows name them relative to this directory
    work_dir: str = "???"  # every step's outputs
    prompts_dir: str = str(PROMPTS_DIR)  # relative prompt names resolve here
    seed: int = 0
    steps: list[str] = field(default_factory=lambda: list(STEP_NAMES))  # the steps the driver runs, in order
    force: list[str] = field(default_factory=list)  # re-run these steps (and the ones after them) even if done
    models: ModelsConfig = field(default_factory=ModelsConfig)
    segment: SegmentConfig = field(default_factory=SegmentConfig)
    caption: CaptionConfig = field(default_factory=CaptionConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    refine: RefineConfig = field(default_factory=RefineConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    split: SplitConfig = field(default_factory=SplitConfig)


class ConfigError(ValueError):
    """The configuration is incomplete or inconsistent; the message says which key to set and how."""


def _validate(cfg: PipelineConfig) -> None:
    unknown = [name for name in (*cfg.steps, *cfg.force) if name not in STEP_NAMES]
    if unknown:
        raise ConfigError(f"unknown step(s) {unknown} in steps/force; the steps are {list(STEP_NAMES)}")
    for role in ROLES:
        model = getattr(cfg.models, role)
        if model.backend not in ("openai", "local"):
            raise ConfigError(f"models.{role}.backend={model.backend!r}: use 'openai' or 'local'")
        if model.image_format not in ("jpeg", "png"):
            raise ConfigError(f"models.{role}.image_format={model.image_format!r}: use 'jpeg' or 'png'")
    if cfg.segment.clip_seconds <= 0:
        raise ConfigError(f"segment.clip_seconds must be > 0, got {cfg.segment.clip_seconds}")
    if cfg.generate.num_options < 2:
        raise ConfigError(f"generate.num_options must be >= 2, got {cfg.generate.num_options}")
    rollout = cfg.filter.rollout
    if not rollout.low < rollout.high:
        raise ConfigError(f"filter.rollout.low ({rollout.low}) must be below filter.rollout.high ({rollout.high})")
    if rollout.n < 1:
        raise ConfigError(f"filter.rollout.n must be >= 1, got {rollout.n}")
    if not 0.0 <= cfg.split.sft_ratio <= 1.0:
        raise ConfigError(f"split.sft_ratio must lie in [0, 1], got {cfg.split.sft_ratio}")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> PipelineConfig:
    """The schema's defaults, then the YAML file at ``path``, then dotted ``key=value`` overrides, validated."""
    try:
        tree = OmegaConf.structured(PipelineConfig)
        if path is not None:
            tree = OmegaConf.merge(tree, OmegaConf.load(path))
        tree = OmegaConf.merge(tree, OmegaConf.from_dotlist(list(overrides or [])))
        cfg = OmegaConf.to_object(tree)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"config {path or '<defaults>'}: {exc}") from exc
    _validate(cfg)
    return cfg


def prompt_path(cfg: PipelineConfig, name: str) -> Path:
    """A prompt file: ``name`` as given when absolute, else inside ``prompts_dir``."""
    return Path(cfg.prompts_dir).expanduser() / name
