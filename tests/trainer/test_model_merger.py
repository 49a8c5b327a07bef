"""Round trip: a DCP actor checkpoint of perturbed weights -> scripts/model_merger.py -> from_pretrained; for VILA,
from a real actor save (PolicyModel.save on one gloo rank) to VILA's own directory layout."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed.checkpoint as dcp
from safetensors.torch import load_file
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from transformers import AutoModel, AutoModelForCausalLM

from longrl.config.loader import load_config
from longrl.data.video import DecodedVideo
from longrl.models import get_adapter
from longrl.mrsp import build_sp_groups
from longrl.trainer.merge import merge_actor_checkpoint
from longrl.workers.actor import PolicyModel
from mrsp.spawn import run_on_ranks

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


@pytest.mark.parametrize("family", ["qwen2", "qwen2_5_vl", "qwen3_vl"])
def test_merge_round_trip(tmp_path, tiny_model_dir, family):
    source, actor = _actor_checkpoint(family, tiny_model_dir(family), tmp_path)
    # As users run it: a fresh interpreter that imports torchvision through transformers must not abort.
    merged_run = subprocess.run([sys.executable, str(ROOT / "scripts" / "model_merger.py"), "--local_dir", str(actor)],
                                capture_output=True, text=True, timeout=600)
    assert merged_run.returncode == 0, merged_run.stderr[-3000:]
    target = actor / "huggingface"  # where EasyR1's merger writes: beside the config and tokenizer
    assert merged_run.stdout.strip().splitlines()[-1] == f"merged model written to {target}"
    assert (target / "model.safetensors").is_file()
    assert sorted(path.name for path in actor.iterdir()) == ["huggingface", "model"]  # no temp or old copy left
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
    assert not list((extra / "huggingface").glob("*.safetensors"))


def test_existing_target_and_wrong_dir_are_refused(tmp_path, tiny_model_dir):
    """huggingface/ (config and tokenizer only) is merged into; once it holds weights, or another target holds
    anything, only --overwrite replaces them."""
    _, actor = _actor_checkpoint("qwen2", tiny_model_dir("qwen2"), tmp_path)
    assert merge_actor_checkpoint(actor) == actor / "huggingface"
    with pytest.raises(FileExistsError, match="huggingface already holds a model; pass --overwrite"):
        merge_actor_checkpoint(actor)
    target = merge_actor_checkpoint(actor, overwrite=True, dtype=torch.bfloat16)
    assert get_adapter("qwen2").load_model(target, dtype=None).model.norm.weight.dtype == torch.bfloat16
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    with pytest.raises(FileExistsError, match="--overwrite"):
        merge_actor_checkpoint(actor, tmp_path / "mine")
    assert not (merge_actor_checkpoint(actor, tmp_path / "mine", overwrite=True) / "keep.txt").exists()
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


def _save_vila_policy(model_dir: str, out: str, prompt: dict[str, torch.Tensor]) -> dict:
    """On one gloo rank, as a run saves: the FSDP policy of ``model_dir`` (weights perturbed, so the merged ones can
    only come from the checkpoint) saved by ``PolicyModel.save`` with the run's processor into ``out``; returns the
    saved model's full state dict, its logits for ``prompt``, and the state dict a fresh policy resumed from ``out``
    (``PolicyModel.load``, as a resumed run does) holds."""
    adapter = get_adapter("vila")
    cfg = load_config([f"worker.actor.model.model_path={model_dir}"])
    processor = adapter.load_processor(model_dir)

    def policy_model() -> PolicyModel:
        actor = cfg.worker.actor
        return PolicyModel(actor, adapter, torch.device("cpu"), actor.fsdp, actor.offload, trainable=True,
                           groups=build_sp_groups(1), pad_token_id=processor.tokenizer.pad_token_id)

    def full_state(policy: PolicyModel) -> dict[str, torch.Tensor]:
        state = get_model_state_dict(policy.model, options=StateDictOptions(full_state_dict=True))
        return {key: value.detach().clone() for key, value in state.items()}

    policy = policy_model()
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for param in policy.model.parameters():
            local = param.to_local()  # the whole tensor on the only rank
            local.add_(torch.randn(local.shape, generator=generator) * 0.05)
    policy.save(out, processor)
    policy.model.eval()
    with torch.no_grad():  # as the actor runs it: stage-1 features, then the forward that splices them
        features = policy.model.get_video_features(prompt["pixel_values_videos"], prompt["video_grid_thw"],
                                                   return_dict=False)
        logits = policy.model(input_ids=prompt["input_ids"], attention_mask=prompt["attention_mask"],
                              video_features=features).logits
    resumed = policy_model()
    resumed.load(out)
    return {"state": full_state(policy), "logits": logits, "resumed": full_state(resumed)}


def test_vila_actor_checkpoint_merges_into_vilas_layout_and_loads_back(tmp_path, tiny_model_dir):
    """A real actor save of the tiny NVILA-Lite merged: VILA's layout (config.json at the top; llm/, vision_tower/,
    mm_projector/ each with config and safetensors; the tokenizer in llm/, the image processor in vision_tower/), the
    parts load with the transformers classes VILA's own code uses, and the adapter loads the directory back with the
    checkpoint's weights (bit-equal) and the saved model's logits on a video prompt. A policy resumed from the
    checkpoint holds the same weights."""
    adapter = get_adapter("vila")
    model_dir = tiny_model_dir("vila")
    processor = adapter.load_processor(model_dir)
    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 56, 3), dtype=np.uint8)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens first?"}]}]
    video = DecodedVideo("clip.mp4", frames, np.arange(3) / 2.0, 2.0, 3)
    prompt = adapter.encode(processor, messages, video)
    actor = tmp_path / "actor"
    actor.mkdir()
    [saved] = run_on_ranks(1, _save_vila_policy, str(model_dir), str(actor), prompt)

    target = merge_actor_checkpoint(actor)
    files = {str(path.relative_to(target)) for path in target.rglob("*") if path.is_file()}
    assert {"config.json", "llm/config.json", "llm/generation_config.json", "llm/model.safetensors",
            "llm/tokenizer.json", "llm/tokenizer_config.json", "vision_tower/config.json",
            "vision_tower/model.safetensors", "vision_tower/preprocessor_config.json", "mm_projector/config.json",
            "mm_projector/model.safetensors"} <= files
    assert not any(name.endswith(".safetensors") for name in files if "/" not in name)
    config = json.loads((target / "config.json").read_text())
    source_config = json.loads((model_dir / "config.json").read_text())
    assert config["model_type"] == "llava_llama" and config["architectures"] == ["LlavaLlamaModel"]
    assert config["mm_projector_cfg"] == source_config["mm_projector_cfg"]
    assert json.loads((target / "mm_projector" / "config.json").read_text()) == source_config["mm_projector_cfg"]
    assert config.get("video_token_id") is None and config.get("image_token_id") is None  # not in VILA's file
    state = saved["state"]
    assert saved["resumed"].keys() == state.keys()
    assert all(torch.equal(saved["resumed"][key], value) for key, value in state.items())  # a resumed run's weights
    # Each part on its own, as VILA's code loads it: llm/ and vision_tower/ with transformers, the projector's layers.*
    llm = AutoModelForCausalLM.from_pretrained(str(target / "llm"))
    tower = AutoModel.from_pretrained(str(target / "vision_tower"))
    assert type(llm).__name__ == "Qwen2ForCausalLM" and type(tower).__name__ == "SiglipVisionModel"
    projector = load_file(str(target / "mm_projector" / "model.safetensors"))
    for prefix, part in (("llm.", llm.state_dict()), ("vision_tower.vision_tower.", tower.state_dict()),
                         ("mm_projector.", projector)):
        expected = {key[len(prefix):]: value for key, value in state.items() if key.startswith(prefix)}
        assert part.keys() == expected.keys(), prefix
        assert all(torch.equal(part[key], value) for key, value in expected.items()), prefix

    merged = adapter.load_model(target).eval()
    merged_state = merged.state_dict()
    assert merged_state.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(merged_state[key], value), key
    assert not torch.equal(merged_state["llm.lm_head.weight"], adapter.load_model(model_dir).llm.lm_head.weight)
    reloaded = adapter.load_processor(target)
    assert torch.equal(adapter.encode(reloaded, messages, video)["input_ids"], prompt["input_ids"])
    with torch.no_grad():
        logits = merged(**prompt).logits
    assert logits.shape == saved["logits"].shape
    assert (logits - saved["logits"]).abs().max().item() < 1e-5
    assert adapter.stop_token_ids(target, reloaded) == adapter.stop_token_ids(model_dir, processor)
