"""A settings error as the code location's load error: one plain line, wherever Dagster shows it.

Dagster wraps whatever a definitions module raises in a DagsterUserCodeLoadError: the UI's
location error then reads "Error occurred during the loading of Dagster definitions in
executable_path=...", with two tracebacks through Dagster's loader, and the code server logs
both. An error that already carries the error info of a user-code process is served as that
info instead (`serializable_error_info_from_exc_info`): its message alone, with no stack. This
couples us to two private names of Dagster's (`dagster._core.errors`, `dagster._utils.error`);
test_topology.py's load-error test notices if they change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import dagster as dg
from dagster._core.errors import DagsterUserCodeProcessError
from dagster._utils.error import SerializableErrorInfo

from chat_assets.settings import SettingsError, said


class LocationSettingsError(DagsterUserCodeProcessError):
    """A setting the code location cannot load with, said as `bin/demo` says it."""

    def __init__(self, error: SettingsError) -> None:
        message = said(error)
        info = SerializableErrorInfo(message=message, stack=[], cls_name=type(error).__name__)
        super().__init__(message, user_code_process_error_infos=[info])


class _WithoutTraceback(logging.Filter):
    """`dagster code-server start` logs a load error with its traceback (`logger.exception`):
    for a settings error, the message takes the traceback's place."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, LocationSettingsError):
            record.msg, record.args = f"{record.getMessage()}\n{error}", ()
            record.exc_info = record.exc_text = None
        return True


_without_traceback = _WithoutTraceback()


def load_location(build: Callable[[], dg.Definitions]) -> dg.Definitions:
    """`build()`, its settings errors turned into a load error Dagster shows plainly."""
    try:
        return build()
    except SettingsError as error:
        logging.getLogger("dagster.code_server").addFilter(_without_traceback)
        raise LocationSettingsError(error) from None
