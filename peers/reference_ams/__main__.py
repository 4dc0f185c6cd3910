"""`python -m peers.reference_ams`: serve the reference AMS on 127.0.0.1:$PHEE_PORT."""

from __future__ import annotations

from peers.reference_ams.app import create_app
from peers.reference_ams.settings import AmsSettings
from phee.services import serve


def main() -> None:
    serve(create_app(AmsSettings()))


if __name__ == "__main__":
    main()
