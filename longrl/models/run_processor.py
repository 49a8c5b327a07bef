"""The processor a run renders prompts with and saves in its checkpoints, loaded the same way by driver and workers.

It comes from ``worker.actor.model.tokenizer_path`` (else the model directory); ``data.override_chat_template`` (a
jinja file, EasyR1's key) replaces its chat template, on the processor and on its tokenizer, so the prompts trained on
and the template saved beside the merged model agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from longrl.config.schema import RootConfig
from longrl.models.registry import ModelAdapter

__all__ = ["load_run_processor"]


def load_run_processor(adapter: ModelAdapter, cfg: RootConfig) -> Any:
    """``adapter``'s processor for the run ``cfg`` describes, with the chat template ``data.override_chat_template``
    names when set (FileNotFoundError naming the key when the file is missing)."""
    model = cfg.worker.actor.model
    processor = adapter.load_processor(model.processor_path(), model.trust_remote_code)
    template_file = cfg.data.override_chat_template
    if template_file:
        path = Path(template_file).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"data.override_chat_template={template_file!r}: no such file")
        template = path.read_text()
        processor.chat_template = template
        tokenizer = getattr(processor, "tokenizer", None)
        if tokenizer is not None:
            tokenizer.chat_template = template
    return processor
