"""The CoT-SFT stage on the same model adapters and MR-SP."""
