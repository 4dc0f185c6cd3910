"""`python -m peers.switch_double`: serve the switch double on 127.0.0.1:$PHEE_PORT."""

from __future__ import annotations

from peers.switch_double.app import create_app
from peers.switch_double.settings import SwitchSettings
from phee.services import serve


def main() -> None:
    # `serve` quiets httpx's per-request log lines, as for every service.
    serve(create_app(SwitchSettings()))


if __name__ == "__main__":
    main()
