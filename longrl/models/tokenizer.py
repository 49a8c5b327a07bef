"""Build a small Qwen-style tokenizer locally, so tests and tiny models never need the Hugging Face hub.

The tokenizer mirrors the parts of Qwen2/Qwen2.5's tokenizer that the rest of longrl depends on: byte-level
BPE (any text round-trips), the ChatML special tokens with ``<|im_end|>`` as end of turn and
``<|endoftext|>`` as padding, the vision placeholder tokens, and a ChatML chat template that renders HF
content lists. Its vocabulary is trained on a short built-in corpus (a couple of thousand entries at most)
so that the embedding tables of tiny models stay small; training is deterministic, so the same vocabulary
and ids come out on every machine.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

# Qwen's special tokens in Qwen's own order (their ids follow the BPE vocabulary, as in Qwen's tokenizer).
ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
VISION_START = "<|vision_start|>"
VISION_END = "<|vision_end|>"
VISION_PAD = "<|vision_pad|>"
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
SPECIAL_TOKENS: tuple[str, ...] = (
    ENDOFTEXT,
    IM_START,
    IM_END,
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    VISION_START,
    VISION_END,
    VISION_PAD,
    IMAGE_PAD,
    VIDEO_PAD,
)

# Qwen2's pre-tokenisation split: contractions, letter runs (with one leading non-letter), single digits,
# punctuation runs, newlines and spaces. Single digits matter: numbers never merge into multi-digit tokens.
_PRETOKENIZE_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Merges learned on top of the 256 byte symbols; the corpus below yields fewer, which keeps the vocab ~1k.
_BPE_VOCAB_SIZE = 2048

# ChatML as Qwen renders it, for HF content lists (or plain-string content). Unlike Qwen's released
# templates it adds no default system turn: prompts in longrl say everything they mean explicitly.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{- '<|im_start|>' + message['role'] + '\\n' -}}"
    "{%- if message['content'] is string -%}"
    "{{- message['content'] -}}"
    "{%- else -%}"
    "{%- for item in message['content'] -%}"
    "{%- if item['type'] == 'video' -%}"
    "{{- '<|vision_start|><|video_pad|><|vision_end|>' -}}"
    "{%- elif item['type'] == 'image' -%}"
    "{{- '<|vision_start|><|image_pad|><|vision_end|>' -}}"
    "{%- elif item['type'] == 'text' -%}"
    "{{- item['text'] -}}"
    "{%- else -%}"
    "{{- raise_exception('unsupported content type ' + item['type'] + ' in a ' + message['role'] + ' message') -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{- '<|im_end|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{- '<|im_start|>assistant\\n' -}}"
    "{%- endif -%}"
)

# Text the vocabulary is learned from: the words of format prompts, video questions, options and
# step-by-step reasoning, with digits, option letters, answer tags, math and markdown punctuation.
_CORPUS: tuple[str, ...] = (
    "You are a helpful assistant. Watch the video carefully and answer the question.",
    "You FIRST think about the reasoning process as an internal monologue and then provide the final answer.",
    "The reasoning process MUST BE enclosed within <think> </think> tags.",
    "The final answer MUST BE put in <answer> </answer> tags.",
    "Please think step by step inside <think> and </think>, then give only the option letter in <answer></answer>.",
    "<think>\nFirst, I look at the first frames of the video. Then I compare them with the last frames.\n</think>",
    "<answer>A</answer> <answer>B</answer> <answer>C</answer> <answer>D</answer> <answer>E</answer>",
    "<answer>F</answer> <answer>42</answer> <answer>3.5</answer> <answer>yes</answer> <answer>no</answer>",
    "Question: What happens in the video after the person opens the door?",
    "Question: Which object appears first, and where is it placed?",
    "Question: How many times does the red ball bounce before it stops?",
    "Question: Why does the man turn left at the end of the street?",
    "Question: When does the woman pick up the blue cup from the table?",
    "Options:\nA. The person walks into the kitchen.\nB. The person sits on the chair.",
    "C. The dog runs across the room.\nD. Nothing changes in the scene.",
    "E. The car stops at the light.\nF. The cat jumps onto the sofa.",
    "Answer with the option's letter from the given choices directly.",
    "Select the best answer to the following multiple-choice question based on the video.",
    "Respond with only the letter (A, B, C, D, E or F) of the correct option.",
    "The video shows a long game of football. In the first half the team in white scores a goal.",
    "At the start of the clip, a man is cooking in the kitchen; later he washes the dishes.",
    "Let me count the frames: 0 1 2 3 4 5 6 7 8 9 10 11 12 16 24 32 64 128 256 512 1024 frames.",
    "The time stamps are 0.0 s, 0.5 s, 1.0 s, 2.5 s, 10 s and 60 s; the video lasts 3 minutes.",
    "So the answer is B, because the ball falls before the player kicks it. Therefore B is correct.",
    "Wait, let me check again. The second event happens after the third one, so the order is C, A, B.",
    "Hmm, I think the answer should be D. However, the color of the shirt is green, not yellow.",
    "Compute 3 + 4 = 7, 12 - 5 = 7, 6 * 7 = 42, 9 / 3 = 3 and (2 + 3) * 4 = 20. The result is \\boxed{20}.",
    "If x = 2 and y = 5, then x + y = 7 and x * y = 10; the final value is \\boxed{10}.",
    "# Summary\n## Events\n- The person enters.\n- The person leaves.\n1. first\n2. second\n3. third",
    "**Reasoning:** the event in frame 12 is *before* the event in frame 30. `code` | table | > quote",
    "What is the man doing? He is reading a book, then he is writing a letter, and finally he is sleeping.",
    "Where is the key? It is on the table, next to the phone, in front of the window, behind the door.",
    "Describe the sequence of actions in the video in order, from the beginning to the end.",
    "The answer is correct. The answer is wrong. The format is correct. The format is wrong.",
    "The people in the scene are talking, laughing, eating, drinking, walking, running and dancing.",
    "Is the light on or off? Is the door open or closed? Is the box empty or full? Yes. No.",
    "the a an and or but if then so because therefore however first second third last next before after",
    "one two three four five six seven eight nine ten hundred thousand left right up down top bottom",
    "red green blue yellow black white orange purple brown gray big small long short fast slow",
    "ABCDEF abcdef ABCDEFGHIJKLMNOPQRSTUVWXYZ abcdefghijklmnopqrstuvwxyz 0123456789",
    "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~ ... -- ** ## ### ``` \n\n",
)


@dataclass(frozen=True)
class QwenTokenIds:
    """The token ids a Qwen model config has to agree with, read from a tokenizer."""

    vocab_size: int
    pad_token_id: int
    eos_token_id: int
    im_start_token_id: int
    vision_start_token_id: int
    vision_end_token_id: int
    image_token_id: int
    video_token_id: int

    @classmethod
    def from_tokenizer(cls, tokenizer: PreTrainedTokenizerFast) -> QwenTokenIds:
        ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
        return cls(
            vocab_size=len(tokenizer),
            pad_token_id=ids[ENDOFTEXT],
            eos_token_id=ids[IM_END],
            im_start_token_id=ids[IM_START],
            vision_start_token_id=ids[VISION_START],
            vision_end_token_id=ids[VISION_END],
            image_token_id=ids[IMAGE_PAD],
            video_token_id=ids[VIDEO_PAD],
        )

    def vision_token_kwargs(self) -> dict[str, int]:
        """The media-token ids every Qwen-VL config takes at its top level."""
        return {
            "image_token_id": self.image_token_id,
            "video_token_id": self.video_token_id,
            "vision_start_token_id": self.vision_start_token_id,
            "vision_end_token_id": self.vision_end_token_id,
        }


@functools.lru_cache(maxsize=1)
def _trained_tokenizer_json() -> str:
    """Train the BPE once per process (deterministic) and hand out its serialised form."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_PRETOKENIZE_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_BPE_VOCAB_SIZE,
        min_frequency=1,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS, trainer)
    tokenizer.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS])
    return tokenizer.to_str()


def build_tokenizer(
    out_dir: str | Path | None = None,
    named_tokens: Mapping[str, str] | None = None,
    chat_template: str = CHAT_TEMPLATE,
) -> PreTrainedTokenizerFast:
    """Return the local Qwen-style tokenizer, saved to ``out_dir`` (tokenizer.json, tokenizer_config.json,
    chat_template.jinja) when given, where ``PreTrainedTokenizerFast``/``AutoTokenizer`` load it offline.

    ``named_tokens`` (attribute name -> token, e.g. ``{"audio_token": "<|AUDIO|>"}``) is for a family whose processor
    reads more special tokens by name (Qwen2.5-Omni's audio tokens): tokens not among Qwen's are appended after
    every existing id, so the vocabulary and ids the other families' tiny models were built with do not move.
    """
    backend = Tokenizer.from_str(_trained_tokenizer_json())
    added = [token for token in dict.fromkeys((named_tokens or {}).values()) if token not in SPECIAL_TOKENS]
    backend.add_special_tokens([AddedToken(token, special=True, normalized=False) for token in added])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=ENDOFTEXT,
        unk_token=None,
        extra_special_tokens=[t for t in SPECIAL_TOKENS if t not in (IM_END, ENDOFTEXT)] + added,
        **({"model_specific_special_tokens": dict(named_tokens)} if named_tokens else {}),
        chat_template=chat_template,
        clean_up_tokenization_spaces=False,
        model_max_length=32768,
    )
    if out_dir is not None:
        tokenizer.save_pretrained(str(out_dir))
    return tokenizer
