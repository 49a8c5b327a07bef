"""SFT targets and batches: the default target is the r1v format, a batch is a rollout-layout batch over the targets."""

from pathlib import Path

import pytest
import torch

from longrl.config.loader import load_config
from longrl.data.dataset import VideoQADataset, collate_left_padded
from longrl.data.rows import DatasetRowError, QARow
from longrl.data.synthetic import generate_dataset
from longrl.data.targets import TargetTemplate
from longrl.models import get_adapter
from longrl.sft.batch import sft_batch

REPO = Path(__file__).resolve().parents[2]


def _row(reasoning: str | None) -> QARow:
    return QARow(source="rows.jsonl", row_index=3, uid="r3", question="Which?", answer="B", options=["x", "y"],
                 reasoning=reasoning)


def test_default_target_is_think_then_answer():
    template = TargetTemplate()
    assert template.render(_row("  I watch it.\n")) == "<think>I watch it.</think><answer>B</answer>"
    assert template.render(_row(None)) == "<answer>B</answer>"


def test_target_template_file_and_missing_file(tmp_path):
    path = tmp_path / "target.jinja"
    path.write_text("{{ reasoning }} => {{ options[1] }} ({{ answer }})")
    assert TargetTemplate.from_file(path).render(_row("because")) == "because => y (B)"
    with pytest.raises(FileNotFoundError, match="sft.target_template"):
        TargetTemplate.from_file(tmp_path / "missing.jinja")


@pytest.fixture(scope="module")
def data(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("sft_data")
    generate_dataset(root, num=6, frames=8, seed=5)
    model_dir = tiny_model_dir("qwen2_5_vl")
    return root, model_dir


def _dataset(root: Path, model_dir: Path, *overrides: str) -> VideoQADataset:
    cfg = load_config([f"data.train_files={root / 'train.jsonl'}", "data.val_files=null", "data.video_dir=null",
                       f"worker.actor.model.model_path={model_dir}", "worker.rollout.num_video_frames=4",
                       *overrides], config_name="sft")
    adapter = get_adapter("qwen2_5_vl")
    processor = adapter.load_processor(model_dir)
    return VideoQADataset(cfg.data.train_files, cfg.data, cfg.worker.rollout, adapter, processor,
                          targets=TargetTemplate())


def test_sft_batch_joins_prompt_and_target(data):
    root, model_dir = data
    dataset = _dataset(root, model_dir)
    tokenizer = dataset.tokenizer
    samples = [dataset[0], dataset[1]]
    batch = sft_batch(collate_left_padded(samples, tokenizer.pad_token_id), tokenizer.pad_token_id,
                      tokenizer.eos_token_id)
    targets = [sample["target_ids"] for sample in samples]
    width = max(map(len, targets))
    prompt_width = batch.tensors["prompts"].shape[1]
    assert batch.tensors["responses"].shape == (2, width)
    assert "rollout_log_probs" not in batch.tensors.keys()
    for row, (sample, ids) in enumerate(zip(samples, targets)):
        assert ids[-1] == tokenizer.eos_token_id
        text = tokenizer.decode(ids[:-1])
        assert text == f"<think>{dataset.rows[row].reasoning.strip()}</think><answer>{dataset.rows[row].answer}</answer>"
        assert batch.tensors["responses"][row, : len(ids)].tolist() == ids
        assert batch.tensors["response_mask"][row].tolist() == [1] * len(ids) + [0] * (width - len(ids))
        prompt = sample["inputs"]["input_ids"]
        joined = batch.tensors["input_ids"][row]
        assert joined[prompt_width - len(prompt): prompt_width].tolist() == prompt.tolist()
        assert torch.equal(joined[prompt_width:], batch.tensors["responses"][row])
        assert batch.tensors["attention_mask"][row].sum() == len(prompt) + len(ids)
        assert batch.tensors["mm_token_type_ids"][row, prompt_width:].eq(0).all()


def test_overlong_target_names_the_row_or_is_skipped(data):
    root, model_dir = data
    with pytest.raises(DatasetRowError, match=r"train.jsonl row 0.*overlong target: \d+ tokens > "
                                              r"data.max_response_length 8"):
        _dataset(root, model_dir, "data.max_response_length=8")
    with pytest.raises(ValueError, match="no usable rows"):
        _dataset(root, model_dir, "data.max_response_length=8", "data.on_bad_row=skip")
