"""When a worker asks the CUDA allocator for expandable segments, and when it leaves the setting alone."""

import pytest
import torch

from longrl.workers.cuda_allocator import ALLOC_CONF_VARIABLES, prefer_expandable_segments, wants_expandable_segments


def test_the_hf_engine_wants_expandable_segments_and_vllm_does_not():
    assert wants_expandable_segments("hf", {})
    assert not wants_expandable_segments("vllm", {})


@pytest.mark.parametrize("variable", ALLOC_CONF_VARIABLES)
def test_a_users_own_allocator_setting_wins(variable):
    assert not wants_expandable_segments("hf", {variable: "max_split_size_mb:512"})


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CPU-only check")
def test_nothing_is_set_without_cuda():
    assert prefer_expandable_segments("hf") is False
