"""The developer's harness: fetches and starts the real components, runs the local site.

Nothing that ships in an image imports this package (the import rules in pyproject.toml check
it); it sits above the services and the runtime package `phee`.
"""
