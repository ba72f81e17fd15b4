"""The package version, reported in every heartbeat."""

__version__ = "0.1.0"
