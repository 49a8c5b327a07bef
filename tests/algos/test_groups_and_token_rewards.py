"""Group statistics over non-contiguous uids, and placing scores on the last valid token."""

import statistics

import numpy as np
import pytest
import torch

from longrl.algos.groups import group_ids, group_stats
from longrl.algos.token_rewards import scores_to_token_level_rewards


def test_group_ids_first_appearance_any_hashable():
    ids, num_groups = group_ids(np.array(["b", "a", "b", 7, "a"], dtype=object))
    assert ids.tolist() == [0, 1, 0, 2, 1]
    assert num_groups == 3


def test_group_ids_from_a_tensor_group_by_value():
    ids, num_groups = group_ids(torch.tensor([5, 3, 5, 3]))
    assert ids.tolist() == [0, 1, 0, 1]
    assert num_groups == 2


def test_group_stats_against_statistics_module():
    index = np.array(["b", "a", "b", "c", "a", "b"])
    values = [1.0, 2.0, 3.0, 5.0, 4.0, 8.0]
    stats = group_stats(torch.tensor(values), index)
    for i, uid in enumerate(index):
        members = [v for v, u in zip(values, index) if u == uid]
        assert stats.size[i].item() == len(members)
        assert stats.mean[i].item() == pytest.approx(statistics.mean(members))
        expected_std = statistics.stdev(members) if len(members) > 1 else 0.0
        assert stats.std[i].item() == pytest.approx(expected_std)
        assert stats.constant[i].item() == (len(set(members)) == 1)


def test_group_stats_length_mismatch_names_both_sizes():
    with pytest.raises(ValueError, match="index has 2 uids but there are 3 samples"):
        group_stats(torch.zeros(3), ["a", "b"])


def test_score_lands_on_last_valid_token():
    mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 1, 1, 0], [1, 1, 1, 1]])
    rewards = scores_to_token_level_rewards(torch.tensor([0.5, -1.0, 2.0, 3.0]), mask)
    expected = torch.tensor(
        [[0.0, 0.0, 0.5, 0.0], [-1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 3.0]]
    )
    assert torch.equal(rewards, expected)


def test_empty_response_is_an_error_naming_the_row():
    mask = torch.tensor([[1, 1], [0, 0]])
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        scores_to_token_level_rewards(torch.tensor([1.0, 2.0]), mask)
