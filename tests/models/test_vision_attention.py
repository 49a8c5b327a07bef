"""The towers' varlen attention (longrl.models.vision_attention): on a CPU the tiny towers' features and gradients
equal stock "sdpa" bit for bit; loading routes the declared towers, never the text model nor a user's choice; the
kernel is chosen for CUDA, 16 bits and the head dims it takes; the kernel path hands it packed chunks (checked with a
CPU stand-in, since the kernel itself runs on CUDA only: benchmarks/vision_cuda_check.py)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers import Qwen2_5_VLConfig

from longrl.models import get_adapter, registered_families
from longrl import flash_kernel
from longrl.models import vision_attention
from longrl.models.vision_attention import ATTENTION_NAME, takes_varlen_kernel, use_varlen_attention

# The sub-configs whose towers attend within cu_seqlens chunks, by family.
TOWERS = {"qwen2_vl": ("vision_config",), "qwen2_5_vl": ("vision_config",), "qwen3_vl": ("vision_config",),
          "qwen2_5_omni": ("vision_config", "audio_config")}
# Three frames of 6 x 8 patches: Qwen2.5-VL's tiny windows (2 x 2 merged tokens) cut each frame into four windows,
# and its full-attention block attends per frame.
GRID = torch.tensor([[3, 6, 8]])
# Five chunks of the tiny Omni audio tower (20 mel frames each).
MEL_FRAMES = 100


@pytest.fixture(scope="module")
def loaded(tiny_model_dir):
    """``loaded(family)``: the family's tiny model, as the adapter loads it (one per module)."""
    models = {}

    def get(family: str) -> torch.nn.Module:
        if family not in models:
            models[family] = get_adapter(family).load_model(tiny_model_dir(family)).eval()
        return models[family]

    return get


def _tower_features(family: str, model: torch.nn.Module) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The towers' features for fixed random inputs (a video; an audio too for families that hear), and the
    inputs' gradients of their sum."""
    adapter = get_adapter(family)
    vision = model.config.vision_config
    generator = torch.Generator().manual_seed(0)
    patch_dim = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    inputs = [torch.randn(int(GRID.prod()), patch_dim, generator=generator).requires_grad_()]
    features = [adapter.video_encoder(model)(inputs[0], GRID)]
    if adapter.supports_audio:
        mel_bins = model.config.audio_config.num_mel_bins
        inputs.append(torch.randn(mel_bins, MEL_FRAMES, generator=generator).requires_grad_())
        features.append(adapter.audio_encoder(model)([inputs[1]]))
    torch.cat([f.flatten() for f in features]).sum().backward()
    return torch.cat([f.flatten() for f in features]).detach(), [x.grad for x in inputs]


def _with_implementation(model: torch.nn.Module, names: tuple[str, ...], implementation: str) -> None:
    for name in names:
        getattr(model.config, name)._attn_implementation = implementation


@pytest.mark.parametrize("family", sorted(TOWERS))
def test_towers_equal_stock_sdpa_on_cpu(loaded, family):
    model = loaded(family)
    features, grads = _tower_features(family, model)
    _with_implementation(model, TOWERS[family], "sdpa")
    try:
        stock_features, stock_grads = _tower_features(family, model)
    finally:
        _with_implementation(model, TOWERS[family], ATTENTION_NAME)
    assert torch.equal(features, stock_features)
    assert all(torch.equal(grad, stock) for grad, stock in zip(grads, stock_grads))


@pytest.mark.parametrize("family", sorted(TOWERS))
def test_loading_routes_the_towers_only(tiny_model_dir, loaded, family):
    """load_model (the actor, the reference, the HF engine) and build_empty_model (rank-0 initialisation, the
    merger) set the towers' configs, which the tower modules read; the text model keeps "sdpa"."""
    adapter = get_adapter(family)
    assert adapter.varlen_attention_configs == TOWERS[family]
    with torch.device("meta"):
        empty = adapter.build_empty_model(tiny_model_dir(family), torch.float32)
    for model in (loaded(family), empty):
        assert adapter.vision_tower(model).config._attn_implementation == ATTENTION_NAME
        assert all(getattr(model.config, name)._attn_implementation == ATTENTION_NAME for name in TOWERS[family])
        assert model.config.get_text_config()._attn_implementation == "sdpa"


def test_the_families_declaring_towers_are_those_checked_here():
    assert {family for family in registered_families() if get_adapter(family).varlen_attention_configs} == set(TOWERS)


@pytest.mark.parametrize("choice", ["eager", "flash_attention_2"])
def test_a_chosen_implementation_is_kept(choice):
    config = Qwen2_5_VLConfig()
    config.vision_config._attn_implementation = choice
    config.text_config._attn_implementation = "sdpa"
    use_varlen_attention(config, ("vision_config",))
    assert config.vision_config._attn_implementation == choice
    assert config.text_config._attn_implementation == "sdpa"


@pytest.mark.parametrize(("device", "dtype", "head_dim", "dropout", "kernel"), [
    ("cuda", torch.bfloat16, 80, 0.0, True),  # Qwen2-VL and Qwen2.5-VL towers
    ("cuda", torch.float16, 64, 0.0, True),
    ("cuda", torch.bfloat16, 256, 0.0, True),
    ("cuda", torch.float32, 80, 0.0, False),  # the flash kernel computes 16-bit inputs only
    ("cuda", torch.float64, 80, 0.0, False),
    ("cpu", torch.bfloat16, 80, 0.0, False),
    ("cuda", torch.bfloat16, 76, 0.0, False),  # not a multiple of 8
    ("cuda", torch.bfloat16, 264, 0.0, False),  # over 256
    ("cuda", torch.bfloat16, 80, 0.1, False),  # the kernel has no dropout
])
def test_kernel_choice(device, dtype, head_dim, dropout, kernel, monkeypatch):
    monkeypatch.setattr(flash_kernel, "_kernel_runs", lambda device: True)  # a GPU the kernel was built for
    assert takes_varlen_kernel(torch.device(device), dtype, head_dim, dropout) is kernel


def test_no_kernel_without_torch_varlen(monkeypatch):
    monkeypatch.setattr(flash_kernel, "_kernel_runs", lambda device: True)
    monkeypatch.setattr(vision_attention, "varlen_attn", None)
    assert not takes_varlen_kernel(torch.device("cuda"), torch.bfloat16, 80)


def test_no_kernel_where_it_does_not_run(monkeypatch):
    """A GPU without the kernel (pre-Ampere, or a build without flash) takes the loop instead of failing mid-pass."""
    monkeypatch.setattr(flash_kernel, "_kernel_runs", lambda device: False)
    assert not takes_varlen_kernel(torch.device("cuda"), torch.bfloat16, 80)


def test_kernel_probe_fails_cleanly_on_cpu():
    """The probe's real call: torch has no CPU flash kernel, which the probe reports as False, not an error."""
    assert flash_kernel._kernel_runs(torch.device("cpu")) is False


def test_kernel_path_hands_over_packed_chunks(loaded, monkeypatch):
    """With the kernel chosen, one call per tower layer gets the packed ``(total, heads, d)`` tensors, int32
    boundaries, int lengths and the tower's scale; a CPU stand-in computing that contract gives stock's features."""
    family = "qwen2_5_vl"
    model = loaded(family)
    vision = model.config.vision_config
    head_dim = vision.hidden_size // vision.num_heads
    calls = []

    def stand_in(query, key, value, cu_seq_q, cu_seq_k, max_q, max_k, *, scale):
        assert query.shape[1:] == (vision.num_heads, head_dim) and query.shape == key.shape == value.shape
        assert cu_seq_q.dtype == cu_seq_k.dtype == torch.int32 and torch.equal(cu_seq_q, cu_seq_k)
        assert type(max_q) is type(max_k) is int and max_q == max_k == int(cu_seq_q.diff().max())
        assert scale == head_dim**-0.5
        calls.append(len(cu_seq_q) - 1)
        bounds = cu_seq_q.tolist()
        chunks = [F.scaled_dot_product_attention(*(x[start:end].transpose(0, 1) for x in (query, key, value)),
                                                 scale=scale).transpose(0, 1)
                  for start, end in zip(bounds, bounds[1:])]
        return torch.cat(chunks)

    monkeypatch.setattr(vision_attention, "varlen_attn", stand_in)
    monkeypatch.setattr(vision_attention, "takes_varlen_kernel", lambda *args: True)
    features, grads = _tower_features(family, model)
    monkeypatch.undo()
    windows, frames = 4 * int(GRID[0, 0]), int(GRID[0, 0])
    assert calls == [frames if layer in vision.fullatt_block_indexes else windows for layer in range(vision.depth)]
    _with_implementation(model, TOWERS[family], "sdpa")
    try:
        stock_features, stock_grads = _tower_features(family, model)
    finally:
        _with_implementation(model, TOWERS[family], ATTENTION_NAME)
    torch.testing.assert_close(features, stock_features, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grads[0], stock_grads[0], rtol=1e-5, atol=1e-6)
