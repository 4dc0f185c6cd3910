"""`python -m doubles.switch_double`: serve the switch double on 127.0.0.1:$PHEE_PORT."""

from __future__ import annotations

from doubles.switch_double.app import create_app
from doubles.switch_double.settings import SwitchSettings
from phee.service import load_settings, serve


def main() -> None:
    settings = load_settings(SwitchSettings, "switch double")
    serve(create_app(settings), settings.service)


if __name__ == "__main__":
    main()
