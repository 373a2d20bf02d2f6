"""Errors about the run's configuration; the CLI prints them as one line."""


class ConfigError(ValueError):
  """A config value is missing or invalid; the message names the key."""
