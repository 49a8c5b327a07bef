"""Dataclass schemas of the run configuration, registered with Hydra's ConfigStore."""
