"""The VILA family (NVILA / LongVILA) on tiny models in VILA's directory layout: the registry, the parts and their
module structure, the prompt's token layout, the frames' pixels, the forward's splice, and the remote-code load path.

VILA's own (remote) code cannot be fetched here, so the tiny checkpoints are built locally with the same layout
(config.json ``llava_llama`` with llm_cfg / vision_tower_cfg / mm_projector_cfg; ``llm/`` a real Qwen2ForCausalLM,
``vision_tower/`` a real SiglipVisionModel, ``mm_projector/`` VILA's projector structure).
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import uuid

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, GenerationConfig, Qwen2ForCausalLM, SiglipVisionModel

from longrl.config.loader import load_config
from longrl.data.video import DecodedVideo
from longrl.embeds.cache import EmbeddingCache
from longrl.inference import VideoModel
from longrl.models import adapter_for_model_dir, get_adapter
from longrl.models.remote_code import RemoteCodeRefused
from longrl.models.vila import PatchFold, build_tiny_vila

FAMILY = "vila"
QUESTION = "What happens first?"
# VILA's rendering of one user turn (its qwen2 chat template): a default system turn, the video token, the text.
PROMPT = ("<|im_start|>system\nYou are a helpful assistant<|im_end|>\n<|im_start|>user\n{video}" + QUESTION
          + "<|im_end|>\n<|im_start|>assistant\n")


def _messages() -> list[dict]:
    return [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": QUESTION}]}]


def _video(frames: int, height: int = 40, width: int = 56, seed: int = 0) -> DecodedVideo:
    pixels = np.random.default_rng(seed).integers(0, 256, (frames, height, width, 3), dtype=np.uint8)
    return DecodedVideo("clip.mp4", pixels, np.arange(frames) / 2.0, 2.0, frames)


@pytest.fixture(scope="module")
def longvila_dir(tmp_path_factory):
    """A tiny LongVILA-style directory (2 x 2 fold, ``mlp_downsample``)."""
    return build_tiny_vila(tmp_path_factory.mktemp("tiny_longvila"), seed=0, projector_type="mlp_downsample")


def test_registry_finds_the_family_from_the_config_model_type(tiny_model_dir, tmp_path):
    config = json.loads((tiny_model_dir(FAMILY) / "config.json").read_text())
    assert config["model_type"] == "llava_llama" and config["architectures"] == ["LlavaLlamaModel"]
    assert config["llm_cfg"]["model_type"] == "qwen2"
    assert config["vision_tower_cfg"]["model_type"] == "siglip_vision_model"
    assert config["mm_projector_cfg"]["mm_projector_type"] == "mlp_downsample_3x3_fix"
    assert adapter_for_model_dir(tiny_model_dir(FAMILY)) is get_adapter(FAMILY)
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "config.json").write_text(json.dumps({"model_type": "llava_llama"}))
    assert adapter_for_model_dir(bare) is get_adapter(FAMILY)


@pytest.mark.parametrize("projector, expected", [
    ("nvila", {"layers.1.weight": (288,), "layers.2.weight": (96, 288), "layers.4.weight": (96,),
               "layers.5.weight": (128, 96), "layers.7.weight": (128, 128)}),
    ("longvila", {"layers.1.weight": (128,), "layers.2.weight": (128, 128), "layers.4.weight": (128, 128)}),
])
def test_parts_are_real_transformers_models_and_vilas_projector_structure(tiny_model_dir, longvila_dir, projector,
                                                                           expected):
    """llm/ and vision_tower/ load with transformers' own classes; mm_projector/ holds VILA's ``layers.*`` (fold, norm,
    linears) for the type: 3 x 3 fold of 32-wide SigLIP features (288) -> 96 -> 128 for NVILA-Lite, 2 x 2 (128) ->
    128 -> 128 for LongVILA. The loaded model holds the same parts under VILA's names."""
    model_dir = tiny_model_dir(FAMILY) if projector == "nvila" else longvila_dir
    assert type(AutoModelForCausalLM.from_pretrained(str(model_dir / "llm"))) is Qwen2ForCausalLM
    SiglipVisionModel.from_pretrained(str(model_dir / "vision_tower"))
    weights = load_file(str(model_dir / "mm_projector" / "model.safetensors"))
    assert {name: tuple(t.shape) for name, t in weights.items() if name.endswith("weight")} == expected
    model = get_adapter(FAMILY).load_model(model_dir)
    assert type(model.llm) is Qwen2ForCausalLM and type(model.vision_tower.vision_tower) is SiglipVisionModel
    assert {name for name, _ in model.named_children()} == {"llm", "vision_tower", "mm_projector"}
    state = model.state_dict()
    for name, tensor in weights.items():
        assert torch.equal(state[f"mm_projector.{name}"], tensor)
    assert model.config.get_text_config() is model.llm.config  # MR-SP switches this object's attention


@pytest.mark.parametrize("factor, side", [(2, 4), (2, 5), (3, 5), (3, 6)])
def test_patch_fold_concatenates_each_block_row_by_row_after_zero_padding(factor, side):
    features = torch.randn(2, side * side, 3)
    grid = features.view(2, side, side, 3)
    blocks = -(-side // factor)
    expected = torch.zeros(2, blocks * blocks, factor * factor * 3)
    for i in range(blocks):
        for j in range(blocks):
            parts = [grid[:, y, x] if y < side and x < side else torch.zeros(2, 3)
                     for y in range(i * factor, (i + 1) * factor) for x in range(j * factor, (j + 1) * factor)]
            expected[:, i * blocks + j] = torch.cat(parts, dim=-1)
    assert torch.equal(PatchFold(factor)(features), expected)


@pytest.mark.parametrize("projector, frame_features", [("nvila", 4), ("longvila", 9)])
def test_prompt_is_vilas_with_the_video_expanded_frame_by_frame(tiny_model_dir, longvila_dir, projector,
                                                               frame_features):
    """5 x 5 patches per frame: a 3 x 3 fold gives 2 x 2 tokens, a 2 x 2 fold 3 x 3 (both padded). Each frame is its
    placeholders then "\\n"; the frames' pixels are the SigLIP processor's: resized to the tower's 70 x 70 square
    (aspect ignored) and normalised to [-1, 1]."""
    adapter = get_adapter(FAMILY)
    processor = adapter.load_processor(tiny_model_dir(FAMILY) if projector == "nvila" else longvila_dir)
    video = _video(3)
    encoded = adapter.encode(processor, _messages(), video)
    frame = "<vila/video>" * frame_features + "\n"
    assert processor.tokenizer.decode(encoded["input_ids"][0]) == PROMPT.format(video=frame * 3)
    ids = encoded["input_ids"][0].tolist()
    newline = processor.tokenizer("\n", add_special_tokens=False)["input_ids"]
    start = ids.index(processor.video_token_id)
    assert ids[start:start + 3 * (frame_features + 1)] == ([processor.video_token_id] * frame_features + newline) * 3
    assert encoded["video_grid_thw"].tolist() == [[3, 1, 1]]
    assert torch.equal(encoded["attention_mask"], torch.ones_like(encoded["input_ids"]))
    reference = np.stack([np.asarray(Image.fromarray(f).resize((70, 70), Image.BICUBIC), dtype=np.float64)
                          for f in video.frames])
    reference = torch.from_numpy((reference / 255.0 - 0.5) / 0.5).permute(0, 3, 1, 2)
    pixels = encoded["pixel_values_videos"]
    assert pixels.shape == (3, 3, 70, 70)
    # Torchvision's and PIL's bicubic kernels round differently: within one uint8 level, nearly always equal.
    assert (pixels.double() - reference).abs().max() <= 2 / 255 + 1e-6
    assert (pixels.double() - reference).abs().mean() < 1e-3


@pytest.mark.parametrize("frames", [1, 5, 8])
def test_prompt_length_arithmetic_equals_the_encoded_length(tiny_model_dir, frames):
    adapter = get_adapter(FAMILY)
    processor = adapter.load_processor(tiny_model_dir(FAMILY))
    encoded = adapter.encode(processor, _messages(), _video(frames))
    counted = adapter.count_video_tokens(processor, _video(frames).timestamps, 40, 56)
    assert counted == frames * 5
    assert len(adapter.render_prompt_ids(processor, _messages())) - 1 + counted == encoded["input_ids"].shape[-1]


def test_encode_output_feeds_the_model_which_splices_each_frames_features(tiny_model_dir):
    """``model(**encode(...))`` equals the LLM run on the text embeddings with the placeholders overwritten by the
    tower's select-layer (-2) patch features, folded and projected frame by frame, in frame order; "\\n" stays text.
    Negative control: other pixels give other logits."""
    adapter = get_adapter(FAMILY)
    model_dir = tiny_model_dir(FAMILY)
    processor, model = adapter.load_processor(model_dir), adapter.load_model(model_dir).eval()
    encoded = adapter.encode(processor, _messages(), _video(3))
    with torch.no_grad():
        logits = model(**encoded).logits
        hidden = model.vision_tower.vision_tower(encoded["pixel_values_videos"], output_hidden_states=True)
        features = model.mm_projector.layers(hidden.hidden_states[-2])  # (frames, 4, hidden)
        ids = encoded["input_ids"]
        embeds = model.llm.get_input_embeddings()(ids)
        positions = (ids[0] == processor.video_token_id).nonzero().flatten()
        assert positions.numel() == 12
        embeds[0, positions] = features.reshape(12, -1)
        expected = model.llm(inputs_embeds=embeds).logits
        other = model(**{**encoded, "pixel_values_videos": torch.zeros_like(encoded["pixel_values_videos"])}).logits
    assert (logits - expected).abs().max().item() < 1e-6
    assert (other - logits).abs().max().item() > 1e-3


def test_text_only_prompt_and_refusals(tiny_model_dir, tmp_path):
    adapter = get_adapter(FAMILY)
    model_dir = tiny_model_dir(FAMILY)
    processor = adapter.load_processor(model_dir)
    text_only = adapter.encode(processor, [{"role": "user", "content": [{"type": "text", "text": QUESTION}]}], None)
    assert set(text_only) == {"input_ids", "attention_mask"}
    assert processor.tokenizer.decode(text_only["input_ids"][0]) == PROMPT.format(video="")
    with pytest.raises(ValueError, match="no video was given"):
        adapter.encode(processor, _messages(), None)
    with pytest.raises(ValueError, match="'image' item"):
        adapter.encode(processor, [{"role": "user", "content": [{"type": "image"}, {"type": "video"}]}], _video(2))
    for key, value, reason in (("dynamic_s2", True, "dynamic_s2=True"), ("chat_template", "llama_3", "llama_3"),
                               ("video_encoder", json.dumps({"_target_": "llava.model.encoders.TSPVideoEncoder",
                                                             "pool_sizes": [[8, 1, 1]]}), "TSPVideoEncoder"),
                               ("image_aspect_ratio", "pad", "image_aspect_ratio='pad'")):
        changed = tmp_path / key
        shutil.copytree(model_dir, changed)
        config = json.loads((changed / "config.json").read_text())
        (changed / "config.json").write_text(json.dumps({**config, key: value}))
        with pytest.raises(ValueError, match=reason):
            adapter.load_processor(changed)
        with pytest.raises(ValueError, match=reason):
            adapter.load_model(changed)


def test_the_template_config_json_names_is_the_one_rendered(tiny_model_dir, tmp_path):
    """VILA installs the template named by config.json's chat_template on the tokenizer whatever llm/ saved: a
    tokenizer saved with Qwen2's own template (system turn "You are a helpful assistant.") renders VILA's."""
    adapter = get_adapter(FAMILY)
    changed = tmp_path / "other_template"
    shutil.copytree(tiny_model_dir(FAMILY), changed)
    (changed / "llm" / "chat_template.jinja").write_text(
        "{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' -}}"
        "{%- for m in messages -%}{{- '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' -}}"
        "{%- endfor -%}{{- '<|im_start|>assistant\\n' -}}")
    processor = adapter.load_processor(changed)
    encoded = adapter.encode(processor, _messages(), _video(1))
    assert processor.tokenizer.decode(encoded["input_ids"][0]) == PROMPT.format(video="<vila/video>" * 4 + "\n")
    config = json.loads((changed / "config.json").read_text())
    (changed / "config.json").write_text(json.dumps({**config, "chat_template": None}))
    unnamed = adapter.load_processor(changed)
    rendered = unnamed.tokenizer.decode(adapter.encode(unnamed, _messages(), _video(1))["input_ids"][0])
    assert rendered.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>")


def test_generation_config_is_read_from_the_top_else_from_llm(tiny_model_dir, tmp_path):
    """VILA's own save writes generation_config.json only in llm/: the adapter reads the top's, else llm/'s, and the
    stop ids of generation (training's rollout, evaluation) come from it; with neither, the tokenizer's end of text."""
    adapter = get_adapter(FAMILY)
    changed = tmp_path / "llm_only"
    shutil.copytree(tiny_model_dir(FAMILY), changed)
    (changed / "generation_config.json").unlink()
    processor = adapter.load_processor(changed)
    tokenizer = processor.tokenizer
    im_end, pad = tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.pad_token_id
    assert adapter.load_generation_config(changed).eos_token_id == [im_end, pad]
    assert adapter.stop_token_ids(changed, processor) == [im_end, pad]
    assert VideoModel.from_pretrained(changed).stop_token_ids == (im_end, pad)
    GenerationConfig(eos_token_id=im_end).save_pretrained(str(changed))  # the top's comes first
    assert adapter.stop_token_ids(changed, processor) == [im_end]
    (changed / "generation_config.json").unlink()
    (changed / "llm" / "generation_config.json").unlink()
    assert adapter.load_generation_config(changed) is None
    assert adapter.stop_token_ids(changed, processor) == [tokenizer.eos_token_id] != [im_end, pad]


def test_the_embedding_cache_refuses_the_family_for_its_real_reason(tiny_model_dir, tmp_path):
    """The cache rebuilds a cached video's prompt from its grid (``encode_from_cache``), which this adapter does not
    implement: a run asking for it stops at start saying so, not that there is no vision tower."""
    cfg = load_config([f"worker.actor.model.model_path={tiny_model_dir(FAMILY)}", f"data.cache_dir={tmp_path / 'c'}",
                       "worker.actor.model.freeze_vision_tower=true"])
    with pytest.raises(ValueError, match=r"does not serve model family 'vila': run without data\.cache_dir / "
                                         r"worker\.actor\.cached_embeds_dir \(its adapter's serves_embedding_cache "
                                         r"is False: it cannot rebuild a prompt from a cached video\)") as refused:
        EmbeddingCache.from_config(cfg, get_adapter(FAMILY))
    assert "no vision tower" not in str(refused.value)


def test_same_seed_gives_identical_weights_and_another_seed_others(tmp_path, tiny_model_dir):
    torch.manual_seed(1234)
    expected_next_draw = torch.rand(3)
    torch.manual_seed(1234)
    again = get_adapter(FAMILY).build_tiny(tmp_path / "again", seed=0)
    assert torch.equal(torch.rand(3), expected_next_draw)  # the caller's RNG stream is untouched
    other = get_adapter(FAMILY).build_tiny(tmp_path / "other", seed=1)
    for part in ("llm", "vision_tower", "mm_projector"):
        first = load_file(str(tiny_model_dir(FAMILY) / part / "model.safetensors"))
        same = load_file(str(again / part / "model.safetensors"))
        different = load_file(str(other / part / "model.safetensors"))
        assert first.keys() == same.keys() == different.keys()
        assert all(torch.equal(first[name], same[name]) for name in first)
        assert any(not torch.equal(first[name], different[name]) for name in first if first[name].std() > 0)


# A stand-in for VILA's remote code (the real files cannot be fetched here): config.json's auto_map names these
# modules, and AutoModel builds the model from them with trust_remote_code. Like VILA's own class it overrides
# from_pretrained, builds its parts from the sub-directories (with real transformers models) and holds them as
# llm / vision_tower / mm_projector; it refuses to run unless asked for a CPU device map, as VILA's code would move
# its parts to CUDA otherwise.
_REMOTE_CONFIG = "from longrl.models.vila import VilaConfig as VILAConfig\n"
_REMOTE_MODEL = '''
from pathlib import Path

import torch
from transformers import PreTrainedModel

from longrl.models.vila import VilaConfig, _load_parts


class VILAForCausalLM(PreTrainedModel):
    config_class = VilaConfig

    def __init__(self, config, llm, vision_tower, mm_projector):
        super().__init__(config)
        self.llm, self.vision_tower, self.mm_projector = llm, vision_tower, mm_projector

    @classmethod
    def from_pretrained(cls, path, *args, config=None, device_map=None, **kwargs):
        if device_map != "cpu":
            raise RuntimeError(f"device_map={device_map!r}: the parts would be moved to CUDA")
        config = VilaConfig.from_pretrained(path)
        return cls(config, *_load_parts(Path(path), config, torch.float32))
'''


def test_a_directory_with_remote_code_loads_through_automodel_only_when_trusted(tiny_model_dir, tmp_path, caplog):
    """The remote path's plumbing (detection, AutoModel with trust_remote_code and a CPU device map, the parts taken
    from the loaded object): refused, with nothing run, unless worker.actor.model.trust_remote_code; then logged, and
    the same logits as the local load. VILA's real remote code is not exercised."""
    adapter = get_adapter(FAMILY)
    remote = tmp_path / f"remote_{uuid.uuid4().hex[:8]}"  # transformers caches a directory's modules by its name
    marker = tmp_path / "remote_code_ran"
    shutil.copytree(tiny_model_dir(FAMILY), remote)
    (remote / "configuration_vila.py").write_text(_REMOTE_CONFIG)
    runs_marker = f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
    (remote / "modeling_vila.py").write_text(runs_marker + _REMOTE_MODEL)
    config = json.loads((remote / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_vila.VILAConfig", "AutoModel": "modeling_vila.VILAForCausalLM"}
    (remote / "config.json").write_text(json.dumps(config))
    processor = adapter.load_processor(remote)
    encoded = adapter.encode(processor, _messages(), _video(2))
    with pytest.raises(RemoteCodeRefused, match=r"own Python code \(.*modeling_vila\.py\).*"
                                                 r"worker\.actor\.model\.trust_remote_code=true"):
        adapter.load_model(remote)
    with pytest.raises(RemoteCodeRefused, match="trust_remote_code"):
        VideoModel.from_pretrained(remote)
    assert not marker.exists()
    with caplog.at_level(logging.WARNING, logger="longrl.models.remote_code"):
        loaded = adapter.load_model(remote, trust_remote_code=True).eval()
    assert marker.exists()
    assert f"running the Python code of {remote} (configuration_vila.py, modeling_vila.py)" in caplog.text
    local = adapter.load_model(tiny_model_dir(FAMILY)).eval()
    assert type(loaded.llm) is Qwen2ForCausalLM
    assert any(name.endswith(".modeling_vila") for name in sys.modules)  # the directory's own module built it
    with torch.no_grad():
        assert torch.equal(loaded(**encoded).logits, local(**encoded).logits)
    # Rank-0 initialisation builds the model without weights, which VILA's own classes cannot be: refused by name.
    with pytest.raises(ValueError, match=r"VILA's own code.*enable_rank0_init=false"):
        adapter.build_empty_model(remote, torch.float32, trust_remote_code=True)
