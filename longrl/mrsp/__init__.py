"""Multi-modal reinforcement sequence parallelism: sharded vision encoding and sequence-parallel prefill."""
