"""Step 5 against a loopback endpoint that plants each reply: exact kept and dropped sets, reasons in the report.

The solver and the rollout VLM are reached through the openai backend over real HTTP; the rollout requests carry
the video's sampled frames as JPEG parts, which the test decodes back to the frame indices they show.
"""

from __future__ import annotations

import base64
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from index_frames import read_index
from lvr_helpers import prompt_text
from lvreason.backends import ModelPool
from lvreason.config import load_config
from lvreason.pipeline import run_step
from lvreason.records import write_jsonl

CLIPS = {"cooking.mp4": ["cook-clip-0", "cook-clip-1", "cook-clip-2"], "sports/match.mp4": ["match-clip-0",
                                                                                           "match-clip-1"]}
OPTIONS = ["he slices onions", "he fries eggs", "he leaves the kitchen", "he sings"]  # the answer is always B
DEFAULT = {"clips": ["C"] * 3, "rollout": ["B", "C", "B", "C"]}
# item -> (video, planted replies): "all" answers from every caption, "clips" from each single caption in order,
# "rollout" the n=4 replies on the video. An int is an HTTP status instead of a reply.
PLAN: dict[str, tuple[str, dict]] = {
    "keep": ("cooking.mp4", {"all": ["<answer>B</answer>"], "clips": ["C", "<answer>C</answer>", "no idea"]}),
    "wrong": ("cooking.mp4", {"all": ["<answer>C</answer>"]}),
    "unparsed": ("sports/match.mp4", {"all": ["I cannot tell from this."]}),
    "clip_leak": ("cooking.mp4", {"all": ["B"], "clips": ["C", "The answer is B.", "A"]}),
    "too_easy": ("sports/match.mp4", {"all": ["B"], "rollout": ["B", "B", "<answer>B</answer>", "B"]}),
    "too_hard": ("sports/match.mp4", {"all": ["B"], "rollout": ["C", "???", "<answer>C</answer>", "A"]}),
    "server_error": ("cooking.mp4", {"all": [400]}),
    "lenient": ("sports/match.mp4", {"all": ["So the answer is B."], "clips": ["Answer: A", "<answer>(C)</answer>"],
                                     "rollout": ["<answer>he fries eggs</answer>", "B", "<think>B?</think>C", "?"]}),
    "retried": ("cooking.mp4", {"all": [503, "<answer>B</answer>"], "rollout": ["B", "C", "C", "C"]}),
}


def _question(name: str) -> str:
    return f"Question {name}: what does the cook do after the pan is washed?"


class Script:
    """Answers each request from PLAN; the k-th request of a kind for an item gets that kind's k-th reply."""

    def __init__(self) -> None:
        self.calls: Counter = Counter()

    def __call__(self, body: dict):
        text = prompt_text(body)
        name = next(name for name in PLAN if _question(name) in text)
        video, plan = PLAN[name]
        if body["model"] == "vlm":
            kind, replies = "rollout", plan.get("rollout", DEFAULT["rollout"])
        else:
            shown = [index for index, caption in enumerate(CLIPS[video]) if caption in text]
            if len(shown) > 1:
                kind, replies = "all", plan["all"]
            else:
                kind, replies = f"clip{shown[0]}", [plan.get("clips", DEFAULT["clips"])[shown[0]]]
        count = self.calls[name, kind]
        self.calls[name, kind] += 1
        return replies[min(count, len(replies) - 1) if kind == "all" else count % len(replies)]


def _work_dir(root: Path) -> Path:
    work = root / "work"
    write_jsonl(work / "captions.jsonl", [
        {"video": video, "index": index, "start_s": 5.0 * index, "end_s": 5.0 * (index + 1), "caption": caption}
        for video, captions in CLIPS.items() for index, caption in enumerate(captions)])
    write_jsonl(work / "refined.jsonl", [
        {"item_id": name, "video": video, "type": "temporal", "question": _question(name), "options": OPTIONS,
         "answer": "B", "answer_text": OPTIONS[1], "reasoning": "r", "refined_reasoning": "t", "refine_status": "ok"}
        for name, (video, _) in PLAN.items()])
    return work


def _run(videos: Path, work: Path, url: str, *overrides: str) -> dict:
    cfg = load_config(None, [
        f"videos_dir={videos}", f"work_dir={work}", "force=[filter]",
        "models.solver.backend=openai", f"models.solver.base_url={url}", "models.solver.model=solver",
        "models.solver.max_retries=2", "models.solver.backoff_s=0.01",
        "models.rollout.backend=openai", f"models.rollout.base_url={url}", "models.rollout.model=vlm",
        "models.rollout.num_frames=3", "models.rollout.max_pixels=4096", "filter.rollout.n=4", *overrides])
    result = run_step("filter", cfg, ModelPool(cfg.models), force=True)
    report = {row["item_id"]: row for row in map(json.loads, (work / "filter_report.jsonl").read_text().splitlines())}
    kept = [json.loads(line)["item_id"] for line in (work / "kept.jsonl").read_text().splitlines()]
    assert [name for name in PLAN if report[name]["kept"]] == kept
    return {"stats": result.stats, "report": report, "kept": kept}


def test_each_filter_keeps_and_drops_exactly_the_planted_items(tmp_path, long_videos, scripted_endpoint):
    script = Script()
    endpoint = scripted_endpoint(script)
    out = _run(long_videos, _work_dir(tmp_path), endpoint.url)
    assert out["kept"] == ["keep", "lenient", "retried"]
    report = out["report"]
    assert {name: report[name]["dropped_by"] for name in PLAN} == {
        "keep": None, "wrong": "answerable", "unparsed": "answerable", "clip_leak": "single_clip",
        "too_easy": "rollout", "too_hard": "rollout", "server_error": "answerable", "lenient": None, "retried": None}
    assert out["stats"]["dropped_by"] == {"answerable": 3, "single_clip": 1, "rollout": 2}

    assert report["wrong"]["checks"]["answerable"] == {"kept": False, "reason": "chose C, the answer is B",
                                                       "choice": "C"}
    assert report["wrong"]["checks"]["single_clip"] == {"status": "not run: dropped by answerable"}
    assert report["unparsed"]["checks"]["answerable"]["reason"] == "no parseable choice, the answer is B"
    assert report["server_error"]["checks"]["answerable"]["reason"] == "no reply"
    assert report["clip_leak"]["checks"]["single_clip"]["choices"] == ["C", "B", "A"]
    assert report["clip_leak"]["checks"]["single_clip"]["reason"] == "1/3 single clips answer it (> max_accuracy 0.0)"
    lenient = report["lenient"]["checks"]["rollout"]  # replies reach the n requests in arrival order
    assert lenient["reason"] == "2/4 rollouts correct (inside (0.0, 1.0))" and lenient["accuracy"] == 0.5
    assert sorted(lenient["choices"], key=str) == ["B", "B", "C", None]
    assert report["too_easy"]["checks"]["rollout"]["reason"] == "4/4 rollouts correct (outside (0.0, 1.0))"
    assert report["too_hard"]["checks"]["rollout"]["accuracy"] == 0.0
    assert report["retried"]["checks"]["rollout"]["accuracy"] == 0.25
    # 400 is not retried; 503 is, once
    assert script.calls["server_error", "all"] == 1 and script.calls["retried", "all"] == 2
    # each surviving item's rollout: n=4 requests, each with the video's 3 sampled frames as JPEGs (frames 0, 12, 23
    # of the 24-frame cooking video; 0, 10, 19 of the 20-frame match video), then the question
    rollouts = [body for body in endpoint.requests if body["model"] == "vlm"]
    assert len(rollouts) == 4 * 5
    seeds = sorted(body["seed"] for body in rollouts if _question("keep") in prompt_text(body))
    assert seeds == [seeds[0] + sample for sample in range(4)]  # n samples of one item: distinct seeds
    for body in rollouts:
        parts = body["messages"][0]["content"]
        assert [part["type"] for part in parts] == ["image_url"] * 3 + ["text"]
        frames = [np.asarray(Image.open(io.BytesIO(base64.b64decode(part["image_url"]["url"].split(",")[1]))))
                  for part in parts[:3]]
        assert all(frame.shape == (64, 64, 3) for frame in frames)
        video = PLAN[next(name for name in PLAN if _question(name) in parts[3]["text"])][0]
        assert [read_index(frame) for frame in frames] == ([0, 12, 23] if video == "cooking.mp4" else [0, 10, 19])


def test_disabled_filters_pass_items_on_and_say_so(tmp_path, long_videos, scripted_endpoint):
    endpoint = scripted_endpoint(Script())
    out = _run(long_videos, _work_dir(tmp_path), endpoint.url, "filter.answerable.enabled=false",
               "filter.single_clip.max_accuracy=0.34")
    assert out["kept"] == ["keep", "wrong", "unparsed", "clip_leak", "server_error", "lenient", "retried"]
    assert all(row["checks"]["answerable"] == {"status": "disabled"} for row in out["report"].values())
    assert out["report"]["clip_leak"]["checks"]["single_clip"]["kept"]
    assert not any(prompt_text(body).count("-clip-") > 1 for body in endpoint.requests)  # no all-captions request

    out = _run(long_videos, _work_dir(tmp_path / "again"), endpoint.url, "filter.answerable.enabled=false",
               "filter.single_clip.enabled=false", "filter.rollout.enabled=false")
    assert out["kept"] == list(PLAN) and out["stats"]["dropped_by"] == {}
