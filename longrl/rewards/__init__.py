"""The reward-function API, its loader and the built-in rewards."""
