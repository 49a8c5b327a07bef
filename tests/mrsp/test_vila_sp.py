"""VILA (tiny NVILA-Lite: 3 x 3 projector fold) through MR-SP on 2 gloo ranks equals the single-process model: frame
features, log-probs, entropy, gradients (:mod:`mrsp.equivalence`'s case and checks).

A VILA frame is one temporal slice, so the 7 + 13 = 20 frames are dealt 10 and 10: rank 0 encodes video 0 and the first
3 frames of video 1, rank 1 the other 10 frames of video 1; both videos have odd frame counts.
"""

from __future__ import annotations

import pytest

from mrsp.equivalence import FRAMES, check_padding_free_equals_reference, check_sp_equals_reference, video_family_case

pytestmark = pytest.mark.slow
FAMILY = "vila"


@pytest.fixture(scope="module")
def vila_case(tiny_model_dir, tmp_path_factory):
    return video_family_case(FAMILY, tiny_model_dir(FAMILY), tmp_path_factory.mktemp(FAMILY))


def test_sp2_features_log_probs_and_gradients_equal_the_plain_forward(vila_case):
    assert vila_case["reference"]["features"].shape[0] == sum(FRAMES) * 4  # 2 x 2 tokens per frame
    results = check_sp_equals_reference(vila_case, 2)
    assert [r["encoded_slices"] for r in results] == [[10], [10]]  # frames per rank, one tower call each
    # The loss reaches the tower and the projector through the gathered features, as it does in the plain forward.
    trained = [n for n, g in vila_case["reference"]["grads"].items() if g.abs().sum() > 0]
    assert any(n.startswith("vision_tower.") for n in trained) and any(n.startswith("mm_projector.") for n in trained)


def test_sp2_padding_free_with_a_chunked_gather_equals_the_plain_forward(vila_case):
    check_padding_free_equals_reference(vila_case, 2)
