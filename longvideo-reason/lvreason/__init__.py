"""The LongVideo-Reason data pipeline: long videos -> clips -> captions -> multiple-choice items with reasoning ->
refined traces -> filtered -> SFT and RL rows that longrl trains on. One module per step; see ../README.md."""
