"""Load a user reward function and call it the same way whatever its type.

A reward function is named by a spec, ``path/to/file.py:function_name`` (relative to the current directory, or
absolute) or ``package.module:function_name``; the part after the colon defaults to ``compute_score``. Two types
exist, as in EasyR1 / Long-RL reward files, so those files load unchanged:

* ``sequential`` -- ``compute_score(reward_input: dict, **kwargs) -> dict``, called once per response;
* ``batch`` -- ``compute_score(reward_inputs: list[dict], **kwargs) -> list[dict]``, called once per batch
  (for graders that vectorise, or that call an API and want to batch requests).

Which one a function is follows EasyR1: ``worker.reward.reward_type`` when set, else the module's ``REWARD_TYPE``,
else ``batch``. A function called the other way fails on its first call with :class:`RewardTypeError`, which says
which type fits and how to set it (and is never skipped by ``on_error=skip_step``: no step could ever score).

:func:`load_reward_function` hides the difference behind :class:`RewardFunction`, which the trainer calls on a list
of inputs and gets a list of validated scores. Every way this can go wrong -- a missing file or function, a
function that raises, a malformed return value -- becomes a :class:`RewardFunctionError` that names the function
and, where it can, the sample, because a bad reward otherwise surfaces steps later as a NaN loss or a shape error
far from its cause.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import math
import numbers
import os
import sys
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import Any, Callable

from longrl.config.choices import REWARD_TYPES
from longrl.rewards.deadline import RewardTimeout, deadline
from longrl.rewards.types import RewardInput, RewardScore

DEFAULT_FUNCTION_NAME = "compute_score"
_PREVIEW_CHARS = 300


class RewardFunctionError(RuntimeError):
    """A reward function could not be loaded, raised, or returned something the trainer cannot use."""


class RewardTypeError(TypeError):
    """A reward function was called as the type (batch / sequential) it was not written for."""


def _preview(value: object, limit: int = _PREVIEW_CHARS) -> str:
    """``repr(value)`` cut to about ``limit`` characters, keeping its start and its end.

    The end is kept because that is where a response's final answer sits.
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    head, tail = text[: limit * 2 // 3], text[-(limit // 3) :]
    return f"{head} ... [{len(text) - len(head) - len(tail)} characters omitted] ... {tail}"


def _describe_input(reward_input: Mapping[str, Any]) -> str:
    """What identifies a failing sample: a text response with its ground truth, or, for other inputs (generated
    media with their prompt row), every field, arrays and tensors by type, shape and dtype."""
    if "response" in reward_input:
        return (f"ground_truth={_preview(reward_input.get('ground_truth'))}\n"
                f"  response={_preview(reward_input.get('response'))}")

    def field(value: Any) -> str:
        if hasattr(value, "shape") and hasattr(value, "dtype"):
            return f"<{type(value).__name__} shape={tuple(value.shape)} dtype={value.dtype}>"
        return _preview(value)

    return ", ".join(f"{key}={field(value)}" for key, value in reward_input.items())


def _is_file_source(source: str) -> bool:
    return source.endswith(".py") or "/" in source or os.sep in source


def _parse_spec(spec: str) -> tuple[str, str]:
    """Split ``spec`` into (file path or module name, function name)."""
    source, colon, name = spec.rpartition(":")
    if not colon:
        source, name = spec, DEFAULT_FUNCTION_NAME
    if not source or not name:
        raise RewardFunctionError(
            f"reward function spec {spec!r} is incomplete: expected 'path/to/file.py:function_name' or "
            f"'package.module:function_name'"
        )
    return source, name


def _import_file(path: str) -> ModuleType:
    if not os.path.isfile(path):
        raise RewardFunctionError(
            f"reward function file {path!r} not found (relative paths are resolved against the current "
            f"directory, {os.getcwd()!r})"
        )
    # A name derived from the absolute path: unique per file, and never the bare stem, so a reward file
    # called math.py cannot shadow the standard library's math module.
    digest = hashlib.sha1(path.encode()).hexdigest()[:12]
    module_name = f"longrl_reward_{os.path.splitext(os.path.basename(path))[0]}_{digest}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RewardFunctionError(f"reward function file {path!r} cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling inside the file look their module up here
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[module_name]
        raise RewardFunctionError(
            f"importing reward function file {path!r} failed: {type(exc).__name__}: {exc}"
        ) from exc
    return module


def _import_module(name: str) -> ModuleType:
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise RewardFunctionError(
            f"could not import reward function module {name!r}: {type(exc).__name__}: {exc} (a file path must "
            f"end in .py or contain a '/')"
        ) from exc


def _defined_callables(module: ModuleType) -> list[str]:
    """Public callables defined in ``module`` itself (not imported into it)."""
    return sorted(
        name
        for name, obj in vars(module).items()
        if callable(obj) and not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__
    )


def _check_kwargs(fn: Callable[..., Any], kwargs: Mapping[str, Any], label: str) -> None:
    """Reject configured keyword arguments the function cannot take now, not at the first training step."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # no introspectable signature (a C callable): let the call itself complain
    try:
        signature.bind(None, **kwargs)
    except TypeError as exc:
        raise RewardFunctionError(
            f"reward function {label} cannot be called with the configured reward_function_kwargs "
            f"{sorted(kwargs)}: {exc}"
        ) from exc


class RewardFunction:
    """A loaded reward function: call it with a list of inputs, get one validated score per input.

    Scores come back as plain ``dict[str, float]`` with an ``overall`` key. The object pickles as its spec, so a
    Ray worker that receives it re-imports the file there instead of needing the driver's module objects.
    """

    def __init__(self, spec: str, reward_type: str, fn: Callable[..., Any], kwargs: Mapping[str, Any],
                 type_source: str = "worker.reward.reward_type", configured_type: str | None = None,
                 timeout_s: float | None = None):
        self.spec = spec
        self.timeout_s = timeout_s
        self.reward_type = reward_type
        self.type_source = type_source
        self._configured_type = configured_type
        self.kwargs = dict(kwargs)
        self._fn = fn
        self._first_call = True

    def __repr__(self) -> str:
        return f"RewardFunction({self.spec!r}, reward_type={self.reward_type!r}, kwargs={self.kwargs!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return load_reward_function, (self.spec, self._configured_type, self.kwargs, self.timeout_s)

    def __call__(self, reward_inputs: Sequence[RewardInput], first_index: int = 0) -> list[RewardScore]:
        """Scores of ``reward_inputs``; errors number samples from ``first_index`` (a chunk's place in its batch)."""
        if not reward_inputs:
            return []
        try:
            if self.reward_type == "batch":
                return self._call_batch(reward_inputs)
            return [self._validate(self._call_one(first_index + i, item), first_index + i)
                    for i, item in enumerate(reward_inputs)]
        except RewardFunctionError as error:
            if self._first_call and not isinstance(error.__cause__, RewardTimeout):  # a hung call: don't call again
                self._raise_if_the_other_type_fits(reward_inputs[0], error)
            raise
        finally:
            self._first_call = False

    def _raise_if_the_other_type_fits(self, sample: RewardInput, error: RewardFunctionError) -> None:
        """After a failed first call: if the function scores ``sample`` when called the other way, say so."""
        other = "sequential" if self.reward_type == "batch" else "batch"
        try:
            score = self._fn([sample], **self.kwargs)[0] if other == "batch" else self._fn(sample, **self.kwargs)
            self._validate(score, 0)
        except Exception:  # noqa: BLE001 - it fails either way: the original error is the one to report
            return
        shape = "a list of samples and returns a list" if other == "batch" else "one sample and returns a dict"
        raise RewardTypeError(
            f"reward function {self.spec} was called as a {self.reward_type} function ({self.type_source}) and "
            f"failed, but it takes {shape}: it is a {other} function. Set REWARD_TYPE = \"{other}\" in its file, "
            f"or worker.reward.reward_type={other}. The failure: {str(error).splitlines()[0]}"
        ) from error

    def _call_one(self, index: int, reward_input: RewardInput) -> Any:
        try:
            with deadline(self.timeout_s):
                return self._fn(reward_input, **self.kwargs)
        except (Exception, RewardTimeout) as exc:
            raise RewardFunctionError(
                f"reward function {self.spec} raised {type(exc).__name__}: {exc}\n"
                f"  on sample {index}: {_describe_input(reward_input)}"
            ) from exc

    def _call_batch(self, reward_inputs: Sequence[RewardInput]) -> list[RewardScore]:
        try:
            with deadline(self.timeout_s):
                scores = self._fn(list(reward_inputs), **self.kwargs)
        except (Exception, RewardTimeout) as exc:
            raise RewardFunctionError(
                f"batch reward function {self.spec} raised {type(exc).__name__}: {exc}\n"
                f"  on a batch of {len(reward_inputs)} samples; a batch function scores all samples in one call, "
                f"so the failing sample cannot be identified (use reward_type='sequential' to find it)"
            ) from exc
        if not isinstance(scores, list):
            raise RewardFunctionError(
                f"batch reward function {self.spec} must return a list of {len(reward_inputs)} score dicts, "
                f"one per input; it returned {type(scores).__name__}: {_preview(scores)}"
            )
        if len(scores) != len(reward_inputs):
            raise RewardFunctionError(
                f"batch reward function {self.spec} returned {len(scores)} scores for {len(reward_inputs)} "
                f"inputs; it must return exactly one score dict per input"
            )
        return [self._validate(score, i) for i, score in enumerate(scores)]

    def _validate(self, score: Any, index: int) -> RewardScore:
        def fail(problem: str) -> RewardFunctionError:
            hint = " (a list looks like a batch function: set reward_type='batch')" if isinstance(score, list) else ""
            return RewardFunctionError(
                f"reward function {self.spec} returned an invalid score for sample {index}: {problem}{hint}; "
                f"it returned {_preview(score)}"
            )

        if not isinstance(score, Mapping):
            raise fail(f"expected a dict with an 'overall' key, got {type(score).__name__}")
        if "overall" not in score:
            raise fail("the dict has no 'overall' key")
        checked: dict[str, float] = {}
        for key, value in score.items():
            if not isinstance(key, str):
                raise fail(f"key {key!r} is not a string")
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise fail(f"{key!r} is {type(value).__name__} {value!r}, not a number")
            if not math.isfinite(float(value)):
                raise fail(f"{key!r} is {float(value)}, not a finite number")
            checked[key] = float(value)
        return checked  # type: ignore[return-value]  # keys beyond overall/format/accuracy are allowed


def _resolve_type(reward_type: str | None, module: ModuleType, where: str) -> tuple[str, str]:
    """(type, where it came from): the configured one, else the module's ``REWARD_TYPE``, else batch (EasyR1's)."""
    if reward_type is not None:
        resolved, source = reward_type, "worker.reward.reward_type"
    elif getattr(module, "REWARD_TYPE", None) is not None:
        resolved, source = module.REWARD_TYPE, f"REWARD_TYPE of {where}"
    else:
        resolved, source = "batch", "the default when neither worker.reward.reward_type nor REWARD_TYPE is set"
    if resolved not in REWARD_TYPES:
        raise RewardFunctionError(
            f"unknown reward_type {resolved!r} ({source}); valid reward types: {', '.join(map(repr, REWARD_TYPES))}"
        )
    return resolved, source


def load_reward_function(
    spec: str, reward_type: str | None = None, kwargs: Mapping[str, Any] | None = None,
    timeout_s: float | None = None,
) -> RewardFunction:
    """Import the function named by ``spec`` and bind ``kwargs`` (``worker.reward.reward_function_kwargs``).

    ``timeout_s`` (``worker.reward.timeout_s``) limits each call where calls run on a main thread (see
    :mod:`longrl.rewards.deadline`); a call past it raises :class:`RewardFunctionError` naming the sample.

    ``reward_type`` is ``"sequential"``, ``"batch"`` or None (the module's ``REWARD_TYPE``, else batch; see the
    module docstring). Raises :class:`RewardFunctionError` for an unknown type, a missing or unimportable file or
    module, a missing or non-callable function, or keyword arguments the function does not accept.
    """
    if reward_type is not None and reward_type not in REWARD_TYPES:
        raise RewardFunctionError(
            f"unknown reward_type {reward_type!r}; valid reward types: {', '.join(map(repr, REWARD_TYPES))}"
        )
    kwargs = dict(kwargs or {})
    source, name = _parse_spec(spec)
    if _is_file_source(source):
        source = os.path.abspath(source)
        module, where = _import_file(source), f"reward function file {source!r}"
    else:
        module, where = _import_module(source), f"reward function module {source!r}"
    label = f"{source}:{name}"
    if not hasattr(module, name):
        defined = ", ".join(_defined_callables(module)) or "none"
        raise RewardFunctionError(f"{where} has no function {name!r}; callables it defines: {defined}")
    fn = getattr(module, name)
    if not callable(fn):
        raise RewardFunctionError(f"{label} is a {type(fn).__name__}, not a function")
    _check_kwargs(fn, kwargs, label)
    resolved, type_source = _resolve_type(reward_type, module, where)
    return RewardFunction(label, resolved, fn, kwargs, type_source, reward_type, timeout_s)
