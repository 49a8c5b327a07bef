"""The FSDP actor: response log-probs on 1 and 2 gloo ranks equal a plain model's, and a PPO step moves them."""

from pathlib import Path

import numpy as np
import pytest
import ray
import torch

from longrl.config.loader import load_config
from longrl.data.dataset import VideoQADataset, collate_left_padded
from longrl.data.synthetic import generate_dataset
from longrl.models import get_adapter
from longrl.protocol import TOKEN_KEYS, Batch
from longrl.workers.rollout.hf import HFRollout
from longrl.workers.rollout.sampling import SamplingParams
from longrl.workers.vision_inputs import merge_vision_inputs

FAMILY = "qwen2_5_vl"
REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _config(model_dir: Path, data_dir: Path, ranks: int, **extra):
    overrides = [f"worker.actor.model.model_path={model_dir}", f"data.train_files={data_dir / 'train.jsonl'}",
                 "data.val_files=null", f"data.video_dir={data_dir}", f"trainer.n_gpus_per_node={ranks}",
                 "worker.rollout.n=2", "data.rollout_batch_size=2", "worker.actor.global_batch_size=2",
                 "worker.actor.micro_batch_size_per_device_for_update=1",
                 "worker.actor.micro_batch_size_per_device_for_experience=1", "worker.rollout.num_video_frames=4",
                 "data.max_response_length=6", "worker.actor.model.enable_gradient_checkpointing=false",
                 *[f"{k}={v}" for k, v in extra.items()]]
    return load_config(overrides)


@pytest.fixture(scope="module")
def rollout_batch(tiny_model_dir, tmp_path_factory):
    """Two prompts x two sampled responses from the tiny model: the input every check below scores."""
    data_dir = tmp_path_factory.mktemp("actor_data")
    generate_dataset(data_dir, num=4, frames=8, seed=5)
    model_dir = tiny_model_dir(FAMILY)
    cfg = _config(model_dir, data_dir, 1)
    adapter = get_adapter(FAMILY)
    processor = adapter.load_processor(model_dir)
    dataset = VideoQADataset(cfg.data.train_files, cfg.data, cfg.worker.rollout, adapter, processor)
    collated = collate_left_padded([dataset[0], dataset[1]], processor.tokenizer.pad_token_id)
    prompts = Batch.from_dict({k: collated[k] for k in TOKEN_KEYS},
                              {"uid": collated["uid"], "vision_inputs": collated["vision_inputs"]})
    engine = HFRollout(model_dir)
    sampling = SamplingParams(n=2, temperature=1.0, top_p=1.0, top_k=-1, max_new_tokens=6,
                              eos_token_ids=(processor.tokenizer.eos_token_id,),
                              pad_token_id=processor.tokenizer.pad_token_id, seed=11)
    return model_dir, data_dir, engine.generate(prompts, sampling)


def _reference_log_probs(model_dir: Path, batch: Batch) -> torch.Tensor:
    """A full forward of the unsharded model over prompt + response, scored position by position."""
    model = get_adapter(FAMILY).load_model(model_dir).eval()
    vision = merge_vision_inputs(batch.non_tensors["vision_inputs"], get_adapter(FAMILY).input_keys)
    with torch.no_grad():
        logits = model(input_ids=batch.tensors["input_ids"], attention_mask=batch.tensors["attention_mask"],
                       mm_token_type_ids=batch.tensors["mm_token_type_ids"], **vision).logits
    responses = batch.tensors["responses"]
    prompt_width = batch.tensors["prompts"].shape[1]
    rows = []
    for row in range(len(batch)):
        rows.append(torch.stack([torch.log_softmax(logits[row, prompt_width - 1 + j], -1)[responses[row, j]]
                                 for j in range(responses.shape[1])]))
    return torch.stack(rows)


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("ranks", [1, 2])
def test_fsdp_log_probs_equal_the_unsharded_model(ray_cluster, rollout_batch, ranks):
    from longrl.controller.resource_pool import ResourcePool
    from longrl.controller.worker_group import RayWorkerGroup
    from longrl.workers.hybrid import HybridWorker

    model_dir, data_dir, batch = rollout_batch
    group = RayWorkerGroup(ResourcePool(1, ranks), HybridWorker, _config(model_dir, data_dir, ranks), 1)
    try:
        scores = group.compute_log_prob(batch)
    finally:
        group.shutdown()
    reference = _reference_log_probs(model_dir, batch)
    mask = batch.tensors["response_mask"].bool()
    diff = (scores.tensors["old_log_probs"] - reference).abs()[mask].max().item()
    assert diff < 1e-5, f"max |FSDP - reference| on {ranks} rank(s) = {diff}"
    assert torch.isfinite(scores.tensors["entropy"][mask]).all()


def test_ppo_step_raises_the_favoured_response_and_lowers_the_other(ray_cluster, rollout_batch):
    from longrl.controller.resource_pool import ResourcePool
    from longrl.controller.worker_group import RayWorkerGroup
    from longrl.workers.hybrid import HybridWorker

    model_dir, data_dir, batch = rollout_batch
    # lr 1e-3: Adam's first step moves every weight by about lr, and at 1e-2 that generic drift can lift the
    # disfavoured response too, depending on which tokens were sampled; at 1e-3 the step stays first-order.
    cfg = _config(model_dir, data_dir, 1, **{"worker.actor.optim.lr": 1e-3, "algorithm.use_kl_loss": "false",
                                             "algorithm.disable_kl": "true", "worker.actor.global_batch_size": 2})
    group = RayWorkerGroup(ResourcePool(1, 1), HybridWorker, cfg, 1)
    try:
        before = group.compute_log_prob(batch).tensors["old_log_probs"]
        mask = batch.tensors["response_mask"]
        advantages = torch.zeros_like(before)
        advantages[0] = mask[0]          # favour response 0
        advantages[1] = -mask[1]         # disfavour response 1
        update = batch.union(Batch.from_dict({"old_log_probs": before, "advantages": advantages}))
        [metrics] = group.update_actor(update)
        after = group.compute_log_prob(batch).tensors["old_log_probs"]
    finally:
        group.shutdown()
    assert np.isfinite(metrics["actor/grad_norm"]) and metrics["actor/pg_clipfrac"] == 0.0
    assert (after[0] * mask[0]).sum() > (before[0] * mask[0]).sum()
    assert (after[1] * mask[1]).sum() < (before[1] * mask[1]).sum()
