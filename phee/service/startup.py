"""A service's first step: load its settings and set up its logs, or refuse to start clearly.

A refusal prints one line per problem, each naming the environment variable, and exits 2 before
anything is opened or written: a service without its secret changes nothing.
"""

from __future__ import annotations

import logging
import sys
from typing import NoReturn, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from phee.service.logs import configure_logging
from phee.service.settings import ComponentSettings

S = TypeVar("S", bound=BaseSettings)

log = logging.getLogger("phee.service")


def load_settings(cls: type[S], service_name: str) -> S:
    """The settings from the environment, with logging configured from them; or exit 2 naming
    each variable that is missing or wrong."""
    try:
        settings = cls()
    except ValidationError as err:
        refuse(service_name, settings_problems(cls, err))
    if isinstance(settings, ComponentSettings):
        configure_logging(settings.service)
        for name in settings.dev_values_used:
            log.warning(
                "development mode: %s takes its public development value; never run like this "
                "with real money",
                name,
            )
    return settings


def refuse(service_name: str, problems: list[str]) -> NoReturn:
    print(f"{service_name} cannot start:", file=sys.stderr)
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    sys.exit(2)


def settings_problems(cls: type[BaseSettings], err: ValidationError) -> list[str]:
    """One line per problem, each naming the environment variable it concerns."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    problems = []
    for error in err.errors():
        loc = [str(part) for part in error["loc"]]
        message = error["msg"].removeprefix("Value error, ")
        if loc:
            problems.append(f"{(prefix + loc[0]).upper()}: {message}")
        else:
            problems.append(message)
    return problems
