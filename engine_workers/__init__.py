"""engine_workers package."""
