"""When a worker asks the CUDA allocator for expandable segments, and when it leaves the setting alone."""

from longrl.workers.cuda_allocator import ALLOC_CONF, EXPANDABLE, prefer_expandable_segments


def test_the_hf_engine_gets_expandable_segments():
    environ: dict[str, str] = {}
    assert prefer_expandable_segments("hf", environ)
    assert environ == {ALLOC_CONF: EXPANDABLE}


def test_vllm_and_a_users_own_setting_are_left_alone():
    environ: dict[str, str] = {}
    assert not prefer_expandable_segments("vllm", environ)
    assert environ == {}
    environ = {ALLOC_CONF: "max_split_size_mb:512"}
    assert not prefer_expandable_segments("hf", environ)
    assert environ == {ALLOC_CONF: "max_split_size_mb:512"}
