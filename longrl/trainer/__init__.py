"""The Hydra entry point, the RL loop, metrics, loggers and checkpoints."""
