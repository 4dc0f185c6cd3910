"""`python -m backoffice.api`: serve the operations API (as `python -m backoffice api` does)."""

from backoffice.api.routes import main

main()
