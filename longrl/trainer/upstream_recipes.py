"""Check an EasyR1 / Long-RL checkout's example scripts against longrl (``scripts/check_upstream_recipes.py``).

Each ``examples/**/*.sh`` that runs ``verl.trainer.main`` is read as a shell script would run it (its variables and
positional arguments filled with placeholders), then its arguments are handed to longrl's entry point with
``--cfg job`` (Long-RL's diffusion configs: Flow-GRPO's, ``longrl.flow.main``): the script composes, or longrl's
refusal is reported. With ``run_one_step`` the same arguments train one step on CPU with only the model and data paths
swapped for a tiny random model of the script's family (a tiny diffusers pipeline for the diffusion scripts) and a few
rows in its dataset's layout, plus the overrides that make the step tiny; the reward file is the checkout's own.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from omegaconf import OmegaConf

# Overrides that make a step tiny on one CPU process; each applies only where the composed config has the key.
TINY_OVERRIDES = {
    "trainer.max_steps": "1", "trainer.nnodes": "1", "trainer.n_gpus_per_node": "1", "trainer.logger": "[file]",
    "trainer.save_freq": "-1", "trainer.val_before_train": "false", "trainer.val_freq": "-1",
    "data.rollout_batch_size": "2", "data.mini_rollout_batch_size": "2", "data.val_batch_size": "2",
    "worker.actor.global_batch_size": "2", "worker.rollout.n": "2",
    "worker.actor.micro_batch_size_per_device_for_update": "2",
    "worker.actor.micro_batch_size_per_device_for_experience": "2", "worker.actor.ulysses_size": "1",
    "worker.rollout.tensor_parallel_size": "1", "data.max_response_length": "8", "data.min_pixels": "3136",
    "data.max_pixels": "12544", "algorithm.max_try_make_batch": "2",
    # Flow-GRPO: 32 px media (16 latent px under the tiny VAE, inside the tiny SD3's position table), 2 SDE steps
    "worker.rollout.height": "32", "worker.rollout.width": "32", "worker.rollout.num_steps": "2"}
# Overrides that apply only where the composed config sets the key (a frame count excludes fps sampling).
TINY_IF_SET = {"worker.rollout.num_video_frames": "4"}
# A random tiny model scores every response of a group alike, so DAPO's online filter would keep no group and the
# step would never train: the one step runs with the filter off (the reward file still runs unchanged), and says so.
FILTER_OFF = ("algorithm.online_filtering", "false")
DATA_KEYS = ("data.train_files", "data.val_files")
MEDIA_KEYS = ("data.video_dir", "data.image_dir")
MODEL_KEYS = ("worker.actor.model.model_path", "worker.actor.model.tokenizer_path")
RL_ENTRY, FLOW_ENTRY = "longrl.trainer.main", "longrl.flow.main"


@dataclass
class Recipe:
    """One example script as it would run: its checkout, its path and the arguments after ``verl.trainer.main``."""

    root: Path
    script: Path
    args: list[str]
    model_hint: str

    @property
    def name(self) -> str:
        return str(self.script.relative_to(self.root))

    @property
    def entry(self) -> str:
        """Long-RL's diffusion configs go to Flow-GRPO's entry point, everything else to the RL trainer's."""
        config = dict(_split(arg) for arg in self.args if "=" in arg).get("config", "")
        return FLOW_ENTRY if "diffusion" in config else RL_ENTRY


@dataclass
class Result:
    """What the check found for one script; ``step`` is None where no step was attempted."""

    checkout: str
    script: str
    family: str = ""
    composed: bool = False
    compose_note: str = ""
    step: bool | None = None
    step_note: str = ""
    reward_function: str = ""
    reward_means: dict[str, float] = field(default_factory=dict)


def _split(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def _expand(text: str, variables: dict[str, str], numeric: set[str]) -> str:
    """Shell expansion of ``text`` as far as the checker needs: ``$((arithmetic))``, ``$(command)`` (dropped),
    ``${VAR:-default}``, ``$VAR`` and ``$N`` (placeholders where unset: 8 for a number variable, one used in arithmetic
    or assigned a number elsewhere in the script; a path otherwise)."""
    def value(name: str, default: str | None = None) -> str:
        if name in variables:
            return variables[name]
        if default is not None:
            return default
        return "8" if name in numeric else f"/path/to/{name if not name.isdigit() else 'arg' + name}"

    def arithmetic(match: re.Match) -> str:
        expression = re.sub(r"\$?\{?([A-Za-z_]\w*)\}?", lambda m: value(m.group(1)), match.group(1))
        return str(eval(expression, {"__builtins__": {}})) if re.fullmatch(r"[\d+\-*/() ]+", expression) else "8"

    text = re.sub(r"\$\(\((.*?)\)\)", arithmetic, text)
    text = re.sub(r"\$\([^)]*\)", "", text)
    text = re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: value(m.group(1), m.group(2)), text)
    return re.sub(r"\$(\w+)", lambda m: value(m.group(1)), text)


def read_recipe(root: Path, script: Path) -> Recipe | None:
    """The script's training command with its shell variables expanded; None if it runs no ``verl.trainer.main``."""
    text = script.read_text().replace("\\\n", " ")
    numeric = {name for expression in re.findall(r"\$\(\((.*?)\)\)", text)
               for name in re.findall(r"[A-Za-z_]\w*", expression)}
    numeric |= set(re.findall(r"^\s*([A-Za-z_]\w*)=\d+\s*(?:#.*)?$", text, re.M))
    variables: dict[str, str] = {}
    command = None
    for line in text.splitlines():
        assignment = re.match(r"\s*(?:export\s+)?([A-Za-z_]\w*)=(.*)$", line)
        if assignment:
            raw = re.sub(r"\s+#.*$", "", assignment.group(2)).strip()
            expanded = shlex.split(_expand(raw, variables, numeric))
            value = expanded[0] if expanded else ""
            # A number variable re-pointed at a placeholder (Long-RL's 1h script reads its frame count from $1).
            numeric_placeholder = assignment.group(1) in numeric and not re.fullmatch(r"[\d.]+", value)
            variables[assignment.group(1)] = "8" if numeric_placeholder else value
        elif "verl.trainer.main" in line and command is None:
            command = shlex.split(_expand(line.replace('"$@"', ""), variables, numeric), comments=True)
    if command is None:
        return None
    args = command[command.index("verl.trainer.main") + 1:]
    return Recipe(root, script, args, f"{variables.get('MODEL_PATH', '')} {script.stem}")


def find_recipes(root: Path) -> list[Recipe]:
    """Every ``examples/**/*.sh`` of the checkout at ``root`` that trains through ``verl.trainer.main``."""
    scripts = sorted((root / "examples").rglob("*.sh"))
    return [recipe for recipe in (read_recipe(root, script) for script in scripts) if recipe is not None]


def model_family(recipe: Recipe) -> str | None:
    """The longrl family whose tiny model stands in for what the script trains, None where longrl has none.

    The families say which names are theirs: a language model's family by its name or its checkpoints' model types
    found in the script's model path (or name); a generator's by the flow package's own rule, asked through its
    command line (this room imports nothing of it)."""
    if recipe.entry == FLOW_ENTRY:
        done = subprocess.run([sys.executable, "-m", "longrl.flow.tiny", "--family-for", recipe.model_hint],
                              capture_output=True, text=True)
        return done.stdout.strip() if done.returncode == 0 else None
    from longrl.models.hub import family_named_in
    from longrl.models.registry import BUILTIN_ADAPTERS

    return family_named_in(recipe.model_hint, {name: family for family, entry in BUILTIN_ADAPTERS.items()
                                               for name in (family, *entry.model_types)})


# torch.hub / model_zoo announce on stdout what they fetch on first use: the URL a failed run could not reach.
_DOWNLOADING = re.compile(r'Downloading:? "?(https?://[^"\s]+)')
_EXCEPTION = re.compile(r"^(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception)): (.*)$")


def _refusal(stderr: str) -> str:
    """The line that says why a run stopped, read from its output (stdout, where torch.hub announces a download,
    then stderr): a missing module, longrl's config error, the last exception's message (with the URL it was
    downloading when the download failed), or the last line."""
    missing = re.findall(r"No module named '([\w.]+)'", stderr)
    if missing:
        return f"missing dependency {missing[-1].split('.')[0]}"
    if "config error:" in stderr:  # the message and its indented list of refused keys
        return " ".join(stderr.rpartition("config error:")[2].split())
    lines = [line for line in stderr.splitlines() if line.strip()]
    exceptions = [match for line in lines if (match := _EXCEPTION.match(line))]
    if not exceptions:
        return lines[-1] if lines else "no output"
    name, message = exceptions[-1].groups()
    downloads = _DOWNLOADING.findall(stderr)
    if downloads and re.search(r"URLError|HTTPError|ConnectionError|urlopen error", message):
        return f"needs {downloads[-1]}, fetched on first use, and the download failed: {name}: {message}"
    return f"{name}: {message}"


@contextlib.contextmanager
def _in_dir(path: Path) -> Iterator[None]:
    """``contextlib.chdir`` for Python 3.10."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def compose(recipe: Recipe) -> tuple[Any | None, str]:
    """``--cfg job`` of the script's arguments through the entry point's own ``main``, from the checkout's root (in
    this process: a fresh interpreter per script would spend its time importing torch): (the config, "") or (None,
    why)."""
    entry = importlib.import_module(recipe.entry)
    out, err = io.StringIO(), io.StringIO()
    with _in_dir(recipe.root), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = entry.main(["--cfg", "job", *recipe.args])
        except Exception as exc:  # an uncaught error is a finding about this script, not the end of the check
            return None, f"{type(exc).__name__}: {exc}"
    if status != 0:
        return None, _refusal(err.getvalue())
    return OmegaConf.create(out.getvalue()), ""


def _write_tone(path: Path, seconds: float = 0.5, rate: int = 16000) -> str:
    """A 440 Hz tone as a 16-bit mono WAV file; returns its name."""
    import wave

    import numpy as np

    samples = (0.3 * 32767 * np.sin(2 * np.pi * 440 * np.arange(int(seconds * rate)) / rate)).astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(rate)
        handle.writeframes(samples.tobytes())
    return path.name


def _write_rows(kind: str, data: Any, out: Path) -> Path:
    """A few rows in the layout of the script's dataset (its own prompt / answer / media keys), with real media; a
    generator's rows are prompts alone."""
    out.mkdir(parents=True, exist_ok=True)
    if kind == "prompts":
        rows = [{data.prompt_key: prompt} for prompt in ("a photo of a red car", "a blue bench by the sea",
                                                          "a green apple left of a yellow banana", "a white dog")]
    else:
        questions = [(f"What is {a} + {b}?", str(a + b)) for a, b in ((2, 3), (4, 4), (1, 6), (5, 2))]
        rows = [{data.prompt_key: question, data.answer_key: answer} for question, answer in questions]
    if kind == "image":
        import numpy as np
        from PIL import Image

        rng = np.random.default_rng(0)
        for index, row in enumerate(rows):
            Image.fromarray(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8)).save(out / f"{index}.png")
            row[data.image_key] = [f"{index}.png"]
    elif kind == "video":
        from longrl.data.synthetic import generate_dataset

        generate_dataset(out, num=4, frames=8, seed=0)
        videos = sorted((out / "videos").glob("*.mp4"))
        for index, row in enumerate(rows):
            row[data.prompt_key] = "What happens in the video? A. a cup moves B. nothing"
            row[data.answer_key] = "<answer>A</answer>"
            row[data.video_key] = f"videos/{videos[index % len(videos)].name}"
            if data.get("use_audio"):  # the synthetic videos are silent: name a sound file (data.audio_key)
                row[data.audio_key] = _write_tone(out / "tone.wav")
    path = out / "rows.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def _data_kind(recipe: Recipe, family: str) -> str:
    """prompts (a generator's), video (a video folder or dataset, or Omni), text (a text family) or image rows."""
    if recipe.entry == FLOW_ENTRY:
        return "prompts"
    settings = dict(_split(arg) for arg in recipe.args if "=" in arg)
    video_data = "data.video_dir" in settings or "video" in settings.get("data.train_files", "").lower()
    from longrl.models.registry import get_adapter

    adapter = get_adapter(family)
    if adapter.supports_audio or video_data:  # the audio-visual family trains on videos with their sound
        return "video"
    return "image" if adapter.supports_video or adapter.supports_images else "text"


def one_step_overrides(recipe: Recipe, config: Any, model_dir: Path, rows: Path) -> list[str]:
    """The script's arguments with only the model and data paths replaced, then the tiny-step overrides of the keys
    the composed config has."""
    replaced = {key: str(model_dir) for key in MODEL_KEYS[:1]}
    replaced.update({key: str(rows) for key in DATA_KEYS})
    script_keys = {_split(arg)[0] for arg in recipe.args if "=" in arg}
    replaced.update({key: str(rows.parent) for key in MEDIA_KEYS
                     if key in script_keys or OmegaConf.select(config, key) is not None})
    replaced.update({key: str(model_dir) for key in MODEL_KEYS[1:] if key in script_keys})
    missing = object()
    replaced.update({key: value for key, value in TINY_OVERRIDES.items()
                     if OmegaConf.select(config, key, default=missing) is not missing})
    replaced.update({key: value for key, value in TINY_IF_SET.items() if OmegaConf.select(config, key) is not None})
    if OmegaConf.select(config, FILTER_OFF[0]):
        replaced[FILTER_OFF[0]] = FILTER_OFF[1]
    kept = [arg for arg in recipe.args if "=" not in arg or _split(arg)[0] not in replaced]
    return kept + [f"{key}={value}" for key, value in replaced.items()]


def build_tiny_model(entry: str, family: str, out: Path) -> None:
    """A tiny random model of ``family`` in ``out``: for Flow-GRPO a diffusers pipeline with a tiny VAE, made by its
    builder's command line (the RL trainer's room imports nothing of the flow package), else the family adapter's."""
    if entry == FLOW_ENTRY:
        subprocess.run([sys.executable, "-m", "longrl.flow.tiny", "--family", family, "--out", str(out), "--vae"],
                       check=True, capture_output=True)
        return
    from longrl.models.registry import get_adapter

    get_adapter(family).build_tiny(out, seed=0)


def run_one_step(recipe: Recipe, config: Any, family: str, work: Path, timeout: float) -> tuple[bool, str, dict]:
    """Train one step in ``work`` (its ``examples`` a link to the checkout's, so the script's relative paths and
    reward file are the checkout's own); (ran, note, the step's ``reward/*`` and score means)."""
    model_dir = work.parent / f"tiny_{family}"
    if not model_dir.exists():
        build_tiny_model(recipe.entry, family, model_dir)
    rows = _write_rows(_data_kind(recipe, family), config.data, work / "data")
    (work / "examples").symlink_to(recipe.root / "examples", target_is_directory=True)
    args = one_step_overrides(recipe, config, model_dir, rows)
    done = subprocess.run([sys.executable, "-m", recipe.entry, *args], cwd=work, capture_output=True, text=True,
                          timeout=timeout)
    (work / "run.log").write_text(shlex.join(args) + "\n\n" + done.stdout + "\n" + done.stderr)
    metrics_files = sorted(work.glob("outputs/logs/*/*/metrics.jsonl"))
    if done.returncode != 0 or not metrics_files:
        return False, _refusal(done.stdout + "\n" + done.stderr), {}
    steps = [json.loads(line) for line in metrics_files[0].read_text().splitlines()]
    means = {key: value for key, value in steps[-1].items() if key.startswith("reward/") or key == "critic/score/mean"}
    filter_off = f"{FILTER_OFF[0]}={FILTER_OFF[1]}" in args
    return True, f"step {steps[-1]['step']}" + (", online filter off" if filter_off else ""), means


def check(recipe: Recipe, checkout: str, work: Path, one_step: bool, timeout: float) -> Result:
    """Compose the script, and with ``one_step`` train one tiny step of it in a fresh folder under ``work``."""
    family = model_family(recipe)
    result = Result(checkout, recipe.name, family or "unknown")
    config, result.compose_note = compose(recipe)
    result.composed = config is not None
    if config is not None:
        result.reward_function = str(OmegaConf.select(config, "worker.reward.reward_function", default="") or "")
    if not one_step or config is None:
        return result
    if family is None:
        result.step_note = f"not attempted: longrl has no model family for {recipe.model_hint!r}"
        return result
    step_dir = work / checkout / recipe.script.stem
    step_dir.mkdir(parents=True, exist_ok=False)
    try:
        result.step, result.step_note, result.reward_means = run_one_step(recipe, config, family, step_dir, timeout)
    except subprocess.TimeoutExpired:
        result.step, result.step_note = False, f"step took over {timeout:.0f} s"
    return result


def markdown_table(results: Sequence[Result]) -> str:
    """One row per script: composed?, stepped?, the reward function and the means of what it returned."""
    lines = ["| checkout | script | family | compose | one step | reward function | reward means |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        composed = "ok" if r.composed else f"refused: {r.compose_note}"
        step = {None: r.step_note or "-", True: f"ok ({r.step_note})", False: f"failed: {r.step_note}"}[r.step]
        means = ", ".join(f"{key.removeprefix('reward/').replace('critic/score/mean', 'score')} {value:.3f}"
                          for key, value in r.reward_means.items())
        cells = [r.checkout, r.script, r.family, composed, step, r.reward_function, means or "-"]
        lines.append("| " + " | ".join(cell.replace("|", "\\|").replace("\n", " ") for cell in cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Check every checkout given, print each script's result as it comes and the table at the end; exit status 1
    when a script did not compose (or, with ``--run-one-step``, a step that was attempted failed)."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkouts", nargs="+", type=Path, help="working trees of EasyR1 / Long-RL")
    parser.add_argument("--run-one-step", action="store_true", help="also train one tiny CPU step of each script")
    parser.add_argument("--only", action="append", default=[],
                        help="check only scripts whose path contains this text (repeatable)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per one-step run")
    parser.add_argument("--work-dir", type=Path, default=None, help="where steps run and keep their run.log")
    args = parser.parse_args(argv)
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="upstream_recipes."))
    results = []
    for root in args.checkouts:
        root = root.resolve()
        if not (root / "examples").is_dir():
            parser.error(f"{root} has no examples/ folder; give the root of an EasyR1 or Long-RL checkout")
        for recipe in find_recipes(root):
            if not args.only or any(text in recipe.name for text in args.only):
                results.append(check(recipe, root.name, work, args.run_one_step, args.timeout))
                print(markdown_table(results[-1:]).splitlines()[-1], flush=True)
    print(f"\nsteps ran under {work}\n\n{markdown_table(results)}")
    composed = sum(r.composed for r in results)
    stepped = sum(bool(r.step) for r in results)
    print(f"\n{composed} of {len(results)} scripts compose; {stepped} trained one step")
    return 0 if all(r.composed and r.step is not False for r in results) else 1
