"""`python -m callback_router`: serve the router on 127.0.0.1:$PHEE_PORT until SIGTERM."""

from __future__ import annotations

from callback_router.app import create_app
from callback_router.settings import RouterSettings
from phee.services import serve


def main() -> None:
    settings = RouterSettings()  # type: ignore[call-arg]  # required fields come from the env
    serve(create_app(settings))


if __name__ == "__main__":
    main()
