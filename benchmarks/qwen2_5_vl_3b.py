"""Qwen2.5-VL-3B-Instruct's architecture, the benchmarks' model: here without the workload's imports, so a script
that needs only the sizes (vision_cuda_check.py) runs on a bare GPU machine."""

TEXT_3B = {"hidden_size": 2048, "intermediate_size": 11008, "num_hidden_layers": 36, "num_attention_heads": 16,
           "num_key_value_heads": 2, "max_position_embeddings": 128000, "rms_norm_eps": 1e-6, "hidden_act": "silu",
           "vocab_size": 151936, "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0,
                                                     "mrope_section": [16, 24, 24]}}
VISION_3B = {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "out_hidden_size": 2048,
             "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112,
             "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2}
