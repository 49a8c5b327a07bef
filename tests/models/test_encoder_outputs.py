"""Precomputed features given as ``mm_encoder_outputs`` reach the language model at their placeholders, in every
transformers version (5.17 ignored the keyword for Qwen-VL); a count that does not match is refused."""

from __future__ import annotations

import pytest
import torch
from transformers.modeling_outputs import BaseModelOutputWithPooling

from longrl.models import get_adapter


def _language_model_input(model, input_ids, outputs):
    text_model = getattr(model.model, "language_model", None) or model.model
    captured = {}
    hook = text_model.register_forward_pre_hook(lambda _m, _a, kwargs: captured.update(kwargs), with_kwargs=True)
    try:
        with torch.no_grad():
            model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids), mm_encoder_outputs=outputs,
                  position_ids=torch.arange(input_ids.shape[1]).expand(3, 1, -1), use_cache=False)
    finally:
        hook.remove()
    return captured["inputs_embeds"][0]


@pytest.mark.parametrize("family", ["qwen2_5_vl", "qwen2_vl"])
def test_image_and_video_features_land_on_their_placeholders(tiny_model_dir, family):
    model = get_adapter(family).load_model(tiny_model_dir(family)).eval()
    config = model.config
    ids = torch.tensor([[5, config.image_token_id, config.image_token_id, 6, config.video_token_id, 7]])
    hidden = config.text_config.hidden_size
    image, video = torch.randn(2, hidden), torch.randn(1, hidden)
    outputs = {"image": BaseModelOutputWithPooling(pooler_output=(image,)),
               "video": BaseModelOutputWithPooling(pooler_output=(video,))}
    embeds = _language_model_input(model, ids, outputs)
    assert torch.equal(embeds[1:3], image) and torch.equal(embeds[4], video[0])
    text = model.get_input_embeddings()(ids[0, [0, 3, 5]])
    assert torch.equal(embeds[[0, 3, 5]], text)


def test_a_feature_count_unlike_the_placeholders_is_refused(tiny_model_dir):
    model = get_adapter("qwen2_5_vl").load_model(tiny_model_dir("qwen2_5_vl")).eval()
    ids = torch.tensor([[5, model.config.video_token_id, 7]])
    two = BaseModelOutputWithPooling(pooler_output=(torch.randn(2, model.config.text_config.hidden_size),))
    with pytest.raises(ValueError, match="the input holds 1 video placeholder tokens but 2 video features"):
        _language_model_input(model, ids, {"video": two})
