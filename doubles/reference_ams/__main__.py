"""`python -m doubles.reference_ams`: serve the reference AMS on 127.0.0.1:$PHEE_PORT."""

from __future__ import annotations

from doubles.reference_ams.app import create_app
from doubles.reference_ams.settings import AmsSettings
from phee.service import load_settings, serve


def main() -> None:
    settings = load_settings(AmsSettings, "reference AMS")
    serve(create_app(settings), settings.service)


if __name__ == "__main__":
    main()
