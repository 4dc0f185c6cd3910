"""`python -m callback_router`: serve the router on 127.0.0.1:$PHEE_PORT until SIGTERM."""

from __future__ import annotations

from callback_router.app import create_app
from callback_router.settings import RouterSettings
from phee.service import load_settings, serve


def main() -> None:
    settings = load_settings(RouterSettings, "callback router")
    serve(create_app(settings), settings.service)


if __name__ == "__main__":
    main()
