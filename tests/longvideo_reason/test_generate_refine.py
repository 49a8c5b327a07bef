"""Steps 3 and 4 against planted replies: fields read out of any wrapping, options assembled in code with the answer
letter known, every unusable reply dropped and counted (never a crash), and the refined trace kept."""

from __future__ import annotations

import json
import re

import pytest

from lvr_helpers import prompt_text
from lvreason.backends import ModelPool
from lvreason.cli import main
from lvreason.config import load_config
from lvreason.pipeline import run_step
from lvreason.records import write_jsonl

CONFIG = """
videos_dir: {videos}
work_dir: {work}
models:
  generator: &llm {{backend: openai, base_url: "{url}", model: writer, max_retries: 0}}
  refiner: *llm
generate:
  num_options: 3
  types:
    - {{name: temporal, description: the order of events}}
    - {{name: spatial, description: where things are}}
"""
# Each reply keyed by what the request is about; 400 answers with that HTTP status.
QUESTIONS = {("v1-a", "temporal"): "<think>the pan first</think><question>Q1 what is cooked?</question>",
             ("v1-a", "spatial"): "Sure, here it is:\nQuestion: Q2 where is the pan?",
             ("v2-a", "temporal"): "   ",
             ("v2-a", "spatial"): "<question>Q4 where is the ball?</question>"}
ANSWERS = {"Q1": "<answer>he cooks eggs</answer>", "Q2": 400, "Q4": "Answer: on the left"}
DISTRACTORS = {"Q1": ["<distractor>he sleeps</distractor>", "He cooks  eggs!"],  # the second repeats the answer
               "Q4": ["<distractor>on the right</distractor>", "- in the middle"]}


def script(body: dict):
    text = prompt_text(body)
    if "Write one challenging question" in text:
        caption = "v1-a" if "v1-a" in text else "v2-a"
        kind = re.search(r"tests (\w+) reasoning", text).group(1)
        return QUESTIONS[caption, kind]
    question = re.search(r"Question: (Q\d)", text).group(1)
    if "Give the correct answer" in text:
        return ANSWERS[question]
    if "Write one more wrong option" in text:
        return DISTRACTORS[question][text.count("\n- ")]  # the options written so far are listed with "- "
    if "Explain step by step" in text:
        return "<reasoning>At 00:00 the ball is on the left.</reasoning>"
    letter = re.search(r"Correct option: ([A-Z])\.", text).group(1)
    return f"<think>draft</think><reasoning>I watch the ball stay left. So the answer is {letter}.</reasoning>"


def test_items_are_built_in_code_and_bad_replies_are_dropped_and_counted(tmp_path, scripted_endpoint):
    endpoint = scripted_endpoint(script)
    work = tmp_path / "work"
    write_jsonl(work / "captions.jsonl", [
        {"video": "v1.mp4", "index": 0, "start_s": 0.0, "end_s": 10.0, "clip": "c/0.mp4", "caption": "v1-a"},
        {"video": "v1.mp4", "index": 1, "start_s": 10.0, "end_s": 20.0, "clip": "c/1.mp4", "caption": None},
        {"video": "v2.mp4", "index": 0, "start_s": 0.0, "end_s": 10.0, "clip": "c/2.mp4", "caption": "v2-a"}])
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG.format(videos=tmp_path, work=work, url=endpoint.url))
    cfg = load_config(config)
    models = ModelPool(cfg.models)

    stats = run_step("generate", cfg, models).stats
    assert (stats["attempted"], stats["items"]) == (4, 1)
    assert stats["dropped"] == {"empty_question": 1, "no_reply": 1, "repeated_option": 1}
    rejects = {row["item_id"]: row
               for row in map(json.loads, (work / "generate_rejects.jsonl").read_text().splitlines())}
    assert {key: (row["reason"], row["request"]) for key, row in rejects.items()} == {
        "v2.mp4::temporal": ("empty_question", "question"), "v1.mp4::spatial": ("no_reply", "answer"),
        "v1.mp4::temporal": ("repeated_option", "distractor_1")}
    [item] = [json.loads(line) for line in (work / "items.jsonl").read_text().splitlines()]
    assert item["item_id"] == "v2.mp4::spatial" and item["question"] == "Q4 where is the ball?"
    assert sorted(item["options"]) == ["in the middle", "on the left", "on the right"]
    assert item["options"]["ABC".index(item["answer"])] == item["answer_text"] == "on the left"
    assert item["reasoning"] == "At 00:00 the ball is on the left."
    # the uncaptioned clip is not shown to the model; the second distractor request lists the first
    assert not any("None" in prompt_text(body) for body in endpoint.requests)
    assert any("- on the right" in prompt_text(body) for body in endpoint.requests)

    assert run_step("refine", cfg, models).stats["status"] == {"ok": 1}
    [refined] = [json.loads(line) for line in (work / "refined.jsonl").read_text().splitlines()]
    assert refined["refined_reasoning"] == f"I watch the ball stay left. So the answer is {item['answer']}."
    assert {key: refined[key] for key in item} == item


def test_a_step_whose_requests_all_fail_exits_non_zero_and_a_rerun_redoes_it(tmp_path, scripted_endpoint):
    work, config = tmp_path / "work", tmp_path / "config.yaml"
    write_jsonl(work / "captions.jsonl", [
        {"video": "v1.mp4", "index": 0, "start_s": 0.0, "end_s": 10.0, "clip": "c/0.mp4", "caption": "v1-a"},
        {"video": "v2.mp4", "index": 0, "start_s": 0.0, "end_s": 10.0, "clip": "c/2.mp4", "caption": "v2-a"}])
    config.write_text(CONFIG.format(videos=tmp_path, work=work, url=scripted_endpoint(lambda body: 503).url))
    with pytest.raises(SystemExit) as failed:
        main("generate", ["--config", str(config)])
    assert str(failed.value.code).startswith("error: step generate failed: none of its 4 model requests got a reply")
    assert not (work / "items.jsonl").exists()  # not finished: the next run does not skip it
    config.write_text(CONFIG.format(videos=tmp_path, work=work, url=scripted_endpoint(script).url))
    result = main("generate", ["--config", str(config)])["generate"]
    assert result.ran and result.stats["items"] == 1
