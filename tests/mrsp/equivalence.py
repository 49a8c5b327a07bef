"""The MR-SP equivalence checks every video family's tests run: the case, its single-process reference, and the
comparisons of MR-SP on gloo ranks with it (features, log-probs, entropy, gradients, frames encoded once).

The case is two prompts with videos of 7 and 13 frames, which split evenly neither by video nor by frame over 2 or 4
ranks; the reference is the plain forward of the family's model over the raw pixels (its towers and the full
sequence in one process, transformers' SDPA attention), and each whole video's features from the family's encoder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from longrl.data.video import DecodedVideo
from longrl.models import get_adapter

from mrsp.ranks import max_masked_diff, score_modes
from mrsp.spawn import run_on_ranks
from prompt_cases import plain_forward_scores, prompt_sample, scored_case

FRAMES = (7, 13)
RESPONSE_LENGTHS = (5, 2)  # the second response is right-padded
RESPONSE_WIDTH = 5
# score_with_sp's (padding_free, num_chunks, with_grad) for each check
PADDED = (False, 1, True)  # check_sp_equals_reference: padded rows, one-round gather, gradients
PACKED = (True, 3, False)  # check_padding_free_equals_reference: packed rows, the gather in 3 rounds


def video_family_case(family: str, model_dir: Path, tmp_dir: Path, both_checks_at: tuple[int, ...] = (2,)
                      ) -> dict[str, Any]:
    """The case (saved under ``tmp_dir`` for the ranks) and its reference. At the SP sizes ``both_checks_at`` the
    family's tests run both checks, so the ranks are started once for the two (see :func:`_rank_results`)."""
    adapter = get_adapter(family)
    processor = adapter.load_processor(model_dir)
    rng = np.random.default_rng(3)
    samples = []
    questions = ("What happens first?", "Which object appears last, and where does it go?")
    side = adapter.video_size_factor  # frames of 2 x 2 and 2 x 3 merged patches
    for index, (frames, width, question) in enumerate(zip(FRAMES, (2 * side, 3 * side), questions)):
        video = DecodedVideo(f"v{index}.mp4", rng.integers(0, 256, (frames, 2 * side, width, 3), dtype=np.uint8),
                             np.arange(frames) / 2.0, 2.0, frames)
        messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": question}]}]
        samples.append(prompt_sample(str(index), adapter.encode(processor, messages, video), question))
    case = scored_case(samples, processor.tokenizer.pad_token_id, RESPONSE_LENGTHS, RESPONSE_WIDTH, rng)
    path = tmp_dir / "case.pt"
    torch.save(case, path)
    model = adapter.load_model(model_dir).eval()
    encoder = adapter.video_encoder(model)
    with torch.no_grad():
        features = torch.cat([encoder(row["pixel_values_videos"], row["video_grid_thw"])
                              for row in case["vision_rows"]])
    reference = {**plain_forward_scores(model, case, adapter.input_keys), "features": features}
    return {"family": family, "model_dir": model_dir, "case": case, "path": str(path), "reference": reference,
            "both_checks_at": both_checks_at, "rank_results": {}}


def _rank_results(setup: dict[str, Any], sp: int, mode: tuple[bool, int, bool]) -> list[dict[str, Any]]:
    """Each rank's ``score_with_sp`` result for ``mode`` on ``sp`` gloo ranks. Starting the ranks (a process each,
    importing torch and transformers) costs more than the scoring, so at an SP size in ``both_checks_at`` one start
    scores both modes, one after the other on the same ranks, and keeps the other mode's results for its check."""
    cache = setup["rank_results"]
    if (sp, mode) not in cache:
        modes = (PADDED, PACKED) if sp in setup["both_checks_at"] else (mode,)
        per_rank = run_on_ranks(sp, score_modes, setup["family"], str(setup["model_dir"]), setup["path"], modes)
        for index, each in enumerate(modes):
            cache[(sp, each)] = [results[index] for results in per_rank]
    return cache.pop((sp, mode))


def check_sp_equals_reference(setup: dict[str, Any], sp: int) -> list[dict[str, Any]]:
    """Stage 1 with gradients and the padded sharded prefill on ``sp`` ranks against the reference; the ranks'
    results, for a family's own further checks."""
    family, case, reference = setup["family"], setup["case"], setup["reference"]
    results = _rank_results(setup, sp, PADDED)
    mask = case["response_mask"]
    for rank, result in enumerate(results):
        assert torch.equal(result["log_probs"], results[0]["log_probs"]), "SP ranks disagree"
        lp = max_masked_diff(result["log_probs"], reference["log_probs"], mask)
        ent = max_masked_diff(result["entropy"], reference["entropy"], mask)
        feat = (result["features"] - reference["features"]).abs().max().item()
        print(f"{family} sp={sp} rank={rank}: max|dlogp|={lp:.2e} max|dentropy|={ent:.2e} max|dfeature|={feat:.2e}")
        assert lp < 1e-5 and ent < 1e-5
        assert feat < 1e-6  # each temporal slice is encoded on its own (0.0 here; kernels may block rows differently)
    # Each temporal slice encoded exactly once over the group, one tower call per rank.
    slices = sum(int(row["video_grid_thw"][:, 0].sum()) for row in case["vision_rows"])
    assert sum(sum(r["encoded_slices"]) for r in results) == slices
    assert all(len(r["encoded_slices"]) == 1 for r in results)
    # A gradient that is zero analytically (SigLIP's key biases: a shift shared by all keys of a query leaves its
    # softmax unchanged) is roundoff in both runs, so each difference is measured against at least 1e-4 of the
    # model's largest gradient.
    floor = 1e-4 * max(g.abs().max().item() for g in reference["grads"].values())
    worst = max((results[0]["grads"][n] - g).abs().max().item() / max(g.abs().max().item(), floor)
                for n, g in reference["grads"].items())
    print(f"{family} sp={sp}: max relative gradient difference {worst:.2e}")
    assert worst < 1e-4
    missing = [n for n, g in reference["grads"].items()
               if g.abs().sum() > 0 and results[0]["grads"][n].abs().sum() == 0]
    assert not missing
    return results


def check_padding_free_equals_reference(setup: dict[str, Any], sp: int) -> None:
    """Packed rows score like the padded ones; the feature all-gather done in 3 rounds (num_chunk_seq=3) rebuilds
    the single-process encoder's features (chunked and one-round gathers are compared bit for bit in
    test_collectives)."""
    family, case, reference = setup["family"], setup["case"], setup["reference"]
    results = _rank_results(setup, sp, PACKED)
    lp = max_masked_diff(results[0]["log_probs"], reference["log_probs"], case["response_mask"])
    print(f"{family} padding_free sp={sp}: max|dlogp|={lp:.2e}")
    assert lp < 1e-5
    assert (results[0]["features"] - reference["features"]).abs().max().item() < 1e-6
    assert torch.all(results[0]["log_probs"][~case["response_mask"].bool()] == 0)
