"""data.override_chat_template replaces the chat template a run renders prompts with and saves with checkpoints."""

from __future__ import annotations

import pytest

from longrl.config.loader import load_config
from longrl.models.registry import adapter_for_model_dir
from longrl.models.run_processor import load_run_processor

TEMPLATE = ("{% for message in messages %}<<{{ message['role'] }}>>"
            "{% if message['content'] is string %}{{ message['content'] }}"
            "{% else %}{% for part in message['content'] %}{{ part.get('text', '') }}{% endfor %}{% endif %}"
            "{% endfor %}{% if add_generation_prompt %}<<assistant>>{% endif %}")
MESSAGES = [{"role": "user", "content": [{"type": "text", "text": "how many?"}]}]


def _cfg(model_dir, *overrides):
    return load_config([f"worker.actor.model.model_path={model_dir}", "data.train_files=x.jsonl",
                        "data.val_files=null", *overrides])


def test_the_override_renders_prompts_and_is_saved_with_the_processor(tiny_model_dir, tmp_path):
    model_dir = tiny_model_dir("qwen2_5_vl")
    template_file = tmp_path / "plain.jinja"
    template_file.write_text(TEMPLATE)
    adapter = adapter_for_model_dir(model_dir)
    stock = load_run_processor(adapter, _cfg(model_dir))
    assert "<<user>>" not in stock.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    processor = load_run_processor(adapter, _cfg(model_dir, f"data.override_chat_template={template_file}"))
    rendered = processor.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True)
    assert rendered == "<<user>>how many?<<assistant>>"
    assert processor.tokenizer.chat_template == TEMPLATE
    processor.save_pretrained(tmp_path / "saved")
    reloaded = adapter.load_processor(tmp_path / "saved")
    assert reloaded.apply_chat_template(MESSAGES, tokenize=False, add_generation_prompt=True) == rendered


def test_a_missing_template_file_names_the_key(tiny_model_dir, tmp_path):
    model_dir = tiny_model_dir("qwen2_5_vl")
    cfg = _cfg(model_dir, f"data.override_chat_template={tmp_path / 'missing.jinja'}")
    with pytest.raises(FileNotFoundError, match=r"data.override_chat_template='.*missing.jinja': no such file"):
        load_run_processor(adapter_for_model_dir(model_dir), cfg)
