"""MR-SP on 2 and 4 gloo ranks equals the single-process model: video features, log-probs, entropy, gradients.

The case, the reference and the checks are :mod:`mrsp.equivalence`'s. Videos of 7 and 13 frames (4 and 7 temporal
slices, two frame sizes) do not split evenly over 2 or 4 ranks; the tiny models have 4 query and 2 key/value heads, so
SP=4 exercises GQA with fewer key/value heads than ranks.
"""

from __future__ import annotations

import pytest

from mrsp.equivalence import check_padding_free_equals_reference, check_sp_equals_reference, video_family_case

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["qwen2_5_vl", "qwen2_vl"])
def family_case(request, tiny_model_dir, tmp_path_factory):
    family = request.param
    return video_family_case(family, tiny_model_dir(family), tmp_path_factory.mktemp(family))


@pytest.mark.parametrize("sp", [2, 4])
def test_sp_log_probs_features_and_gradients_equal_single_rank(family_case, sp):
    check_sp_equals_reference(family_case, sp)


@pytest.mark.parametrize("sp", [1, 2])
def test_padding_free_packing_equals_padded(family_case, sp):
    check_padding_free_equals_reference(family_case, sp)


def test_qwen3_vl_deepstack_rows_through_sp_equal_single_rank(tiny_model_dir, tmp_path):
    """Qwen3-VL's feature rows carry its deepstack levels beside the merged features: gathered, sliced per rank and
    split inside the forward, they give the single-process log-probs, entropy and gradients (SP 2, padded and
    packed)."""
    case = video_family_case("qwen3_vl", tiny_model_dir("qwen3_vl"), tmp_path)
    check_sp_equals_reference(case, 2)
    check_padding_free_equals_reference(case, 2)
