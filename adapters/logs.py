"""Where task code logs: the run's logger inside a flow or task run (the Prefect UI shows it),
a plain module logger outside one (tests, the gateway, the runner's crash reports)."""

import logging

from prefect.exceptions import MissingContextError
from prefect.logging import get_logger, get_run_logger


def run_logger(name: str) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except MissingContextError:
        return get_logger(name)
