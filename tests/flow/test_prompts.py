"""GenEval-style prompt rows: what is kept, and errors that name the file, the line and the rule."""

from __future__ import annotations

import json

import pytest

from longrl.flow.prompts import PromptDataset, PromptRowError, read_prompt_rows


def _write(tmp_path, name, lines):
    path = tmp_path / name
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


def test_rows_keep_their_metadata_and_index_across_files(tmp_path, prompt_file):
    extra = _write(tmp_path, "more.jsonl", [{"prompt": "a cat", "seed_hint": 3}, ""])
    rows = read_prompt_rows(f"{prompt_file}, {extra}")
    assert [row["index"] for row in rows] == [0, 1, 2, 3, 4]
    assert rows[2]["metadata"]["include"][1]["position"] == ["right of", 0]
    assert rows[4] == {"index": 4, "prompt": "a cat", "metadata": {"prompt": "a cat", "seed_hint": 3}}
    captions = _write(tmp_path, "captions.jsonl", [{"caption": "a dog"}])
    with pytest.raises(PromptRowError, match=r"captions.jsonl, line 1: no prompt text under 'prompt' "
                                             r"\(data.prompt_key\); the row has keys \['caption'\]"):
        read_prompt_rows(str(captions))
    dataset = PromptDataset(str(captions), prompt_key="caption")
    assert len(dataset) == 1 and dataset[0]["prompt"] == "a dog"


@pytest.mark.parametrize("line, message", [
    ("{not json", "line 2: not valid JSON"),
    ('["a list"]', "line 2: a row must be a JSON object, got list"),
    ({"prompt": "x", "tag": 3}, "line 2: 'tag' must be a string"),
    ({"prompt": "x", "include": {"class": "car"}}, "line 2: 'include' must be a list"),
    ({"prompt": "x", "include": [{"count": 1}]}, r"line 2: include\[0\] must be an object with a string 'class'"),
    ({"prompt": "x", "include": [{"class": "car", "count": 0}]}, r"include\[0\].count must be a positive integer"),
    ({"prompt": "x", "include": [{"class": "car", "color": 1}]}, r"include\[0\].color must be a string"),
    ({"prompt": "x", "include": [{"class": "car", "position": ["near", 0]}]}, r"include\[0\].position must be"),
    ({"prompt": "x", "include": [{"class": "car", "position": ["left of", 0]}]}, r"include\[0\].position must be"),
])
def test_bad_rows_are_named(tmp_path, line, message):
    path = _write(tmp_path, "bad.jsonl", [{"prompt": "fine"}, line])
    with pytest.raises(PromptRowError, match=message) as info:
        read_prompt_rows(str(path))
    assert str(path) in str(info.value)


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(PromptRowError, match="not found"):
        read_prompt_rows(str(tmp_path / "nope.jsonl"))
    with pytest.raises(PromptRowError, match="no prompt rows"):
        read_prompt_rows(str(_write(tmp_path, "empty.jsonl", [""])))
