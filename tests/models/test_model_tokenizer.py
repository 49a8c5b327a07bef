"""The local Qwen-style tokenizer: byte-level round trips, Qwen's special tokens, the ChatML template."""

from __future__ import annotations

import jinja2
import pytest
from transformers import AutoTokenizer

from longrl.models.tokenizer import SPECIAL_TOKENS, _trained_tokenizer_json, build_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer()


@pytest.mark.parametrize(
    "text",
    [
        "Question: Which object appears first?\nA. a cup\nB. a ball",
        "<think>\nThe ball falls at 12.5 s, so B.\n</think>\n<answer>B</answer>",
        "unseen wörds, ünïcode ✓ 😀 and CJK 视频\r\n\ttabs   spaces  ",
        "## **Bold** `code` | x = (3 + 4) * 2 \\boxed{14}",
    ],
)
def test_text_round_trips(tokenizer, text):
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text


def test_special_tokens_follow_the_vocabulary_in_qwen_order(tokenizer):
    ids = [tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS]
    assert ids == list(range(len(tokenizer) - len(SPECIAL_TOKENS), len(tokenizer)))
    # each special token stays one token inside text
    text = "".join(SPECIAL_TOKENS)
    assert tokenizer(text)["input_ids"] == ids
    assert (tokenizer.eos_token, tokenizer.pad_token) == ("<|im_end|>", "<|endoftext|>")
    assert tokenizer.bos_token is None


def test_vocabulary_is_small_and_digits_stay_single(tokenizer):
    assert 700 <= len(tokenizer) <= 2048 + len(SPECIAL_TOKENS)
    tokens = tokenizer.convert_ids_to_tokens(tokenizer("2024")["input_ids"])
    assert tokens == ["2", "0", "2", "4"]


def test_training_is_deterministic():
    assert _trained_tokenizer_json.__wrapped__() == _trained_tokenizer_json.__wrapped__()


def test_saved_directory_loads_offline_with_the_same_encoding(tmp_path, tokenizer):
    build_tokenizer(tmp_path)
    assert {"tokenizer.json", "tokenizer_config.json"} <= {p.name for p in tmp_path.iterdir()}
    loaded = AutoTokenizer.from_pretrained(str(tmp_path))
    text = "<|im_start|>user\nHow many times does the red ball bounce?<|im_end|>\n"
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert len(loaded) == len(tokenizer)
    assert loaded.chat_template == tokenizer.chat_template
    assert (loaded.eos_token_id, loaded.pad_token_id) == (tokenizer.eos_token_id, tokenizer.pad_token_id)


def test_chat_template_renders_chatml_with_vision_placeholders(tokenizer):
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "Answer briefly."}]},
        {
            "role": "user",
            "content": [
                {"type": "video"},
                {"type": "text", "text": "What happens first?"},
                {"type": "image"},
            ],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "<answer>A</answer>"}]},
        {"role": "user", "content": "And then?"},
    ]
    expected = (
        "<|im_start|>system\nAnswer briefly.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|video_pad|><|vision_end|>What happens first?"
        "<|vision_start|><|image_pad|><|vision_end|><|im_end|>\n"
        "<|im_start|>assistant\n<answer>A</answer><|im_end|>\n"
        "<|im_start|>user\nAnd then?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered == expected
    without_prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    assert without_prompt == expected.removesuffix("<|im_start|>assistant\n")


def test_chat_template_rejects_unknown_content_types(tokenizer):
    messages = [{"role": "user", "content": [{"type": "audio"}]}]
    with pytest.raises(jinja2.exceptions.TemplateError, match="unsupported content type audio in a user message"):
        tokenizer.apply_chat_template(messages, tokenize=False)
