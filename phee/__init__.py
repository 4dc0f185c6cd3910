"""phee: multi-site high availability for Payment Hub EE (common package and CLI)."""

__version__ = "0.1.0"
