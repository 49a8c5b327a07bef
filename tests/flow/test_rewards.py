"""The built-in media rewards (colour, brightness, GenEval-style composition), the learned-scorer hook (a CLIP model
directory built here), and how a failing reward function is reported."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPConfig, CLIPModel

from longrl.flow.rewards import COLOURS, brightness, colour, composition, with_long_rl_media_keys
from longrl.flow.tiny import build_tokenizer
from longrl.rewards import RewardFunctionError, load_reward_function

ROW = {"prompt": "a red apple left of a blue cup",
       "include": [{"class": "apple", "count": 1, "color": "red"},
                   {"class": "cup", "count": 1, "color": "blue", "position": ["right of", 0]}]}


def _flat(rgb, height=4, width=4) -> torch.Tensor:
    return torch.tensor(rgb).view(3, 1, 1).expand(3, height, width).clone()


def _halves(left, right) -> torch.Tensor:
    return torch.cat([_flat(left, 8, 4), _flat(right, 8, 4)], dim=-1)


def _input(media, row=ROW):
    return {"media": media, "prompt": row["prompt"], "metadata": row}


def test_colour_and_brightness():
    assert colour(_input(_flat(COLOURS["red"])), target=(1, 0, 0)) == {"overall": 1.0}
    assert colour(_input(_flat(COLOURS["blue"])), target=(1, 0, 0))["overall"] == pytest.approx(1 / 3)
    video = torch.stack([_flat((1.0, 0.0, 0.0)), _flat((0.0, 0.0, 0.0))], dim=1)  # (3, F, H, W)
    assert colour(_input(video), target=(1, 0, 0))["overall"] == pytest.approx(1 - 1 / 6)
    assert brightness(_input(_flat((0.2, 0.4, 0.6))))["overall"] == pytest.approx(0.4)
    assert brightness(_input(_flat((0.2, 0.4, 0.6))), target=0.5)["overall"] == pytest.approx(0.9)


def test_composition_reads_colours_and_positions_from_include():
    right = composition(_input(_halves(COLOURS["red"], COLOURS["blue"])))
    assert right == {"overall": 1.0, "colour": 1.0, "position": 1.0}
    swapped = composition(_input(_halves(COLOURS["blue"], COLOURS["red"])))
    assert swapped == {"overall": pytest.approx(2 / 3), "colour": 1.0, "position": 0.0}
    no_blue = composition(_input(_halves(COLOURS["red"], COLOURS["green"])))
    assert no_blue["colour"] == 0.5 and no_blue["position"] == 0.0
    small = _flat(COLOURS["white"], 10, 10)
    small[:, 0, :2] = torch.tensor(COLOURS["red"]).view(3, 1)  # 2 % of the pixels red, min_share 5 %
    row = {"prompt": "a red car", "include": [{"class": "car", "color": "red"}]}
    assert composition(_input(small, row))["overall"] == pytest.approx(0.4)
    video = torch.stack([_halves(COLOURS["red"], COLOURS["blue"]), _halves(COLOURS["blue"], COLOURS["red"])], dim=1)
    assert composition(_input(video))["position"] == 0.5  # frame by frame, averaged


def test_composition_refuses_rows_it_cannot_judge_and_the_loader_names_the_sample():
    reward = load_reward_function("longrl.flow.rewards:composition", "sequential")
    row = {"prompt": "a photo of a dog", "tag": "single_object", "include": [{"class": "dog", "count": 1}]}
    with pytest.raises(RewardFunctionError) as info:
        reward([_input(_flat(COLOURS["red"])), _input(_flat(COLOURS["red"]), row)])
    message = str(info.value)
    assert "on sample 1" in message and "names no 'color'" in message
    assert "prompt='a photo of a dog'" in message and "single_object" in message
    assert "media=<Tensor shape=(3, 4, 4) dtype=torch.float32>" in message
    with pytest.raises(ValueError, match=r"colour\(s\) \['teal'\]"):
        composition(_input(_flat(COLOURS["red"]), {"prompt": "x", "include": [{"class": "a", "color": "teal"}]}))


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    """A tiny random CLIPModel directory with a locally built tokenizer (what a user's CLIP or PickScore is)."""
    out = tmp_path_factory.mktemp("clip")
    tokenizer = build_tokenizer("clip")
    ids = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
           "pad_token_id": tokenizer.pad_token_id}
    config = CLIPConfig(text_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                     "num_attention_heads": 2, "max_position_embeddings": 16, **ids},
                        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                       "num_attention_heads": 2, "image_size": 8, "patch_size": 4},
                        projection_dim=8)
    torch.manual_seed(0)
    CLIPModel(config).save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    return out


def test_clip_score_is_the_scaled_cosine_of_image_and_prompt(clip_dir):
    images = [torch.rand(3, 8, 8, generator=torch.Generator().manual_seed(i)) for i in range(2)]
    video = torch.stack(images, dim=1)  # a video of the two images: the mean of their scores
    inputs = [{"media": images[0], "prompt": "a red car", "metadata": {}},
              {"media": images[1], "prompt": "a blue cup", "metadata": {}},
              {"media": video, "prompt": "a red car", "metadata": {}}]
    reward = load_reward_function("longrl.flow.scorers:clip_score", "batch", {"model_dir": str(clip_dir)})
    scores = [s["overall"] for s in reward(inputs)]
    model = CLIPModel.from_pretrained(str(clip_dir)).eval()
    tokenizer = build_tokenizer("clip")
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    with torch.no_grad():
        out = model(input_ids=tokenizer(["a red car", "a blue cup"], padding=True, return_tensors="pt")["input_ids"],
                    pixel_values=(torch.stack(images) - mean) / std)
    expected = out.logits_per_image  # logit_scale x cosine, image x text
    assert scores[0] == pytest.approx(float(expected[0, 0]), rel=1e-4)
    assert scores[1] == pytest.approx(float(expected[1, 1]), rel=1e-4)
    assert scores[2] == pytest.approx(float(expected[:, 0].mean()), rel=1e-4)
    with pytest.raises(RewardFunctionError, match="is not a model directory"):
        load_reward_function("longrl.flow.scorers:clip_score", "batch",
                             {"model_dir": str(clip_dir / "missing")})(inputs)


def test_inputs_also_carry_long_rl_media_keys_as_views():
    image, video = torch.rand(3, 4, 6), torch.rand(3, 5, 4, 6)
    with_image = with_long_rl_media_keys(_input(image))
    assert with_image["images"] is image and "videos" not in with_image
    with_video = with_long_rl_media_keys(_input(video))
    assert with_video["videos"].shape == (5, 3, 4, 6) and "images" not in with_video
    assert torch.equal(with_video["videos"][2], video[:, 2])
    assert with_video["videos"].data_ptr() == video.data_ptr()
