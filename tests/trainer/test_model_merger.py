"""Round trip: a DCP actor checkpoint of perturbed weights -> scripts/model_merger.py -> from_pretrained."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed.checkpoint as dcp

from longrl.models import get_adapter
from longrl.trainer.merge import merge_actor_checkpoint

ROOT = Path(__file__).resolve().parents[2]
# The test writes the actor checkpoint without a process group, as the merger reads it.
pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")


def _merger_cli():
    spec = importlib.util.spec_from_file_location("model_merger", ROOT / "scripts" / "model_merger.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _actor_checkpoint(family: str, model_dir: Path, out: Path, drop: tuple[str, ...] = (),
                      extra: dict | None = None):
    """Write ``out/actor`` as the actor does: DCP weights under model/, config and tokenizer under huggingface/."""
    model = get_adapter(family).load_model(model_dir)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.05)
    actor = out / "actor"
    state = {key: value for key, value in model.state_dict().items() if key not in drop}
    dcp.save({**state, **(extra or {})}, checkpoint_id=str(actor / "model"))
    (actor / "huggingface").mkdir()
    for path in model_dir.iterdir():
        if not path.name.endswith(".safetensors"):
            shutil.copy2(path, actor / "huggingface" / path.name)
    return model.eval(), actor


def _greedy(model, prompt_ids: torch.Tensor) -> list[int]:
    output = model.generate(input_ids=prompt_ids, attention_mask=torch.ones_like(prompt_ids), max_new_tokens=6,
                            do_sample=False, min_new_tokens=6)
    return output[0].tolist()


@pytest.mark.parametrize("family", ["qwen2", "qwen2_5_vl"])
def test_merge_round_trip(tmp_path, tiny_model_dir, family):
    source, actor = _actor_checkpoint(family, tiny_model_dir(family), tmp_path)
    assert _merger_cli().main(["--local_dir", str(actor)]) == 0
    target = actor / "merged"
    assert (target / "model.safetensors").is_file()
    assert (target / "tokenizer.json").is_file() and (target / "generation_config.json").is_file()
    merged = get_adapter(family).load_model(target).eval()
    expected = source.state_dict()
    merged_state = merged.state_dict()
    assert merged_state.keys() == expected.keys()
    for key, value in expected.items():
        assert torch.equal(merged_state[key], value), key
    # The tokenizer/processor files were carried over and load.
    get_adapter(family).load_processor(target)
    prompt = torch.tensor([[10, 11, 12, 13]])
    tokens = _greedy(merged, prompt)
    assert tokens == _greedy(source, prompt)
    assert len(tokens) == 10


def test_tied_key_may_be_absent_but_others_may_not(tmp_path, tiny_model_dir):
    model_dir = tiny_model_dir("qwen2")
    source, actor = _actor_checkpoint("qwen2", model_dir, tmp_path / "a", drop=("lm_head.weight",))
    merged = merge_actor_checkpoint(actor, tmp_path / "out")
    loaded = get_adapter("qwen2").load_model(merged)
    assert torch.equal(loaded.lm_head.weight, source.model.embed_tokens.weight)

    _, missing = _actor_checkpoint("qwen2", model_dir, tmp_path / "b", drop=("model.norm.weight",))
    with pytest.raises(KeyError, match=r"1 missing key\(s\) \['model.norm.weight'\], 0 unexpected"):
        merge_actor_checkpoint(missing)
    _, extra = _actor_checkpoint("qwen2", model_dir, tmp_path / "c", extra={"stray.weight": torch.zeros(2)})
    with pytest.raises(KeyError, match=r"0 missing key\(s\) \[\], 1 unexpected key\(s\) \['stray.weight'\]"):
        merge_actor_checkpoint(extra)
    assert not (extra / "merged").exists()


def test_existing_target_and_wrong_dir_are_refused(tmp_path, tiny_model_dir):
    _, actor = _actor_checkpoint("qwen2", tiny_model_dir("qwen2"), tmp_path)
    (actor / "merged").mkdir()
    (actor / "merged" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="--overwrite"):
        merge_actor_checkpoint(actor)
    target = merge_actor_checkpoint(actor, overwrite=True, dtype=torch.bfloat16)
    assert not (target / "keep.txt").exists()
    assert get_adapter("qwen2").load_model(target, dtype=None).model.norm.weight.dtype == torch.bfloat16
    with pytest.raises(FileNotFoundError, match="global_step_N/actor"):
        merge_actor_checkpoint(tmp_path)


def test_upload_uses_huggingface_hub_only_when_asked(tmp_path, tiny_model_dir, monkeypatch):
    import huggingface_hub

    calls = []

    class FakeApi:
        def create_repo(self, repo_id, private, exist_ok):
            calls.append(("create", repo_id, private, exist_ok))
            return f"https://huggingface.co/{repo_id}"

        def upload_folder(self, folder_path, repo_id, repo_type):
            calls.append(("upload", Path(folder_path).name, repo_id, repo_type))

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    _, actor = _actor_checkpoint("qwen2", tiny_model_dir("qwen2"), tmp_path)
    cli = _merger_cli()
    assert cli.main(["--local_dir", str(actor), "--target_dir", str(tmp_path / "hf")]) == 0
    assert calls == []
    assert cli.main(["--local_dir", str(actor), "--target_dir", str(tmp_path / "hf"), "--overwrite",
                     "--hf_upload_path", "me/tiny"]) == 0
    assert calls == [("create", "me/tiny", True, True), ("upload", "hf", "me/tiny", "model")]
