"""MR-SP, multi-modal reinforcement sequence parallelism: stage 1 (frames of each video encoded across the SP group,
all-gathered, kept for the whole step) and stage 2 (sequence-sharded prefill with Ulysses attention for log-probs).

Knows torch.distributed, never Ray.
"""

from longrl.mrsp.attention import ATTENTION_NAME, AttentionLayout, kv_head_repeat, use_mrsp_attention
from longrl.mrsp.collectives import all_to_all, combine_shards, gather_rows
from longrl.mrsp.encode import VideoEncoder, encode_row_videos
from longrl.mrsp.frames import SlicePiece, plan_frame_shards
from longrl.mrsp.groups import SequenceParallelGroups, build_sp_groups
from longrl.mrsp.media import encode_row_media
from longrl.mrsp.prefill import PrefillInputs, sharded_response_scores

__all__ = [
    "ATTENTION_NAME", "AttentionLayout", "PrefillInputs", "SequenceParallelGroups", "SlicePiece", "VideoEncoder",
    "all_to_all", "build_sp_groups", "combine_shards", "encode_row_media", "encode_row_videos", "gather_rows",
    "kv_head_repeat", "plan_frame_shards", "sharded_response_scores", "use_mrsp_attention",
]
