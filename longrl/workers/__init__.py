"""Actor (FSDP policy), reference, rollout engines and weight sync, run inside Ray workers."""
