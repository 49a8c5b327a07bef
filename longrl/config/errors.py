"""The error type of configuration problems, kept apart so any room can raise it without import cycles."""


class ConfigError(ValueError):
    """A configuration key or value that cannot work; the message says which and how to fix it."""
