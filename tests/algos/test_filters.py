"""Online filtering (group mean strictly inside (low, high)) and the zero-std group filter."""

import numpy as np
import pytest
import torch

from longrl.algos.filters import nonzero_std_mask, online_filter_mask

# groups: a all-correct, b all-wrong, c mixed, d mean exactly at filter_low, e singleton; interleaved
INDEX = np.array(["a", "b", "c", "d", "a", "b", "e", "c", "d", "b"])
OVERALL = torch.tensor([1.0, 0.0, 1.0, 0.01, 1.0, 0.0, 0.5, 0.0, 0.01, 0.0])
ACCURACY = np.array([1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])


def test_online_filter_keeps_whole_groups_strictly_inside():
    keep = online_filter_mask({"overall": OVERALL, "accuracy": ACCURACY}, INDEX, "overall", 0.01, 0.99)
    assert keep.dtype == np.bool_
    # kept: c (mean 0.5) and e (mean 0.5); d sits exactly on the bound and goes
    assert keep.tolist() == [False, False, True, False, False, False, True, True, False, False]


def test_online_filter_uses_the_named_key_and_accepts_lists():
    keep = online_filter_mask({"accuracy": ACCURACY.tolist()}, INDEX, "accuracy", 0.0, 1.0)
    # accuracy means: a 1, b 1/3, c 0, d 0, e 0
    assert keep.tolist() == [False, True, False, False, False, True, False, False, False, True]


def test_online_filter_errors_name_the_config_keys():
    with pytest.raises(ValueError, match=r"filter_key 'overall'.*\['accuracy'\]"):
        online_filter_mask({"accuracy": ACCURACY}, INDEX)
    with pytest.raises(ValueError, match="filter_low"):
        online_filter_mask({"overall": OVERALL}, INDEX, "overall", 0.5, 0.5)


def test_nonzero_std_mask_drops_constant_and_singleton_groups():
    keep = nonzero_std_mask(OVERALL, INDEX)
    assert keep.tolist() == [False, False, True, False, False, False, False, True, False, False]
    # usable directly as a row selector on tensors
    assert OVERALL[keep].tolist() == [1.0, 0.0]
