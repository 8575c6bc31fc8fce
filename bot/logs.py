"""Logging set-up: human-readable lines by default, one JSON object per line with
BYOI_LOG_FORMAT=json (for log shippers)."""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
CONTEXT = ("run", "app", "env", "step")
_RUN_THREAD = re.compile(r"^run-(\d+)")
_json = False


class JsonFormatter(logging.Formatter):
    """time, level, logger, run, app, env, step, message (and exc when there is a trace).

    ``run``/``app``/``env``/``step`` come from the record's ``extra``; a line logged on a run's
    own thread (``run-<id>``) gets that run id even without it.
    """

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        for key in CONTEXT:
            data[key] = getattr(record, key, None)
        if data["run"] is None:
            found = _RUN_THREAD.match(record.threadName or "")
            data["run"] = int(found.group(1)) if found else None
        data["message"] = record.getMessage()
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


def configure(environ: Mapping[str, str]) -> None:
    """Set up the root logger from BYOI_LOG_LEVEL (default WARNING) and BYOI_LOG_FORMAT."""
    global _json
    level = environ.get("BYOI_LOG_LEVEL", "WARNING")
    _json = environ.get("BYOI_LOG_FORMAT", "text").lower() == "json"
    if not _json:
        logging.basicConfig(level=level, format=TEXT_FORMAT)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.captureWarnings(True)
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_thread_uncaught


def announce(message: str) -> None:
    """A line for the operator on stdout (listening on…): JSON too when logs are JSON."""
    if not _json:
        print(message, flush=True)
        return
    record = logging.LogRecord("byoi", logging.INFO, __file__, 0, message, None, None)
    print(JsonFormatter().format(record), flush=True)


def _log_uncaught(
    kind: type[BaseException], value: BaseException, trace: TracebackType | None
) -> None:
    logging.getLogger("byoi").critical("uncaught exception", exc_info=(kind, value, trace))


def _log_thread_uncaught(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    logging.getLogger("byoi").error(
        "uncaught exception in thread %s",
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )
