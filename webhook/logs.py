"""Structured JSON logging: one JSON object per line on stderr.

Owns the log format and its setup. Callers pass fields with ``extra={"fields": {...}}``;
nothing here ever serialises a Kubernetes object or key material, and callers must not
either: decision lines carry names and rule ids, never object content.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import orjson


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        for key in ("uid", "kind"):
            value = getattr(record, key, None)
            if value is not None:
                line.setdefault(key, value)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


def configure_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log would add a second, unstructured line per request.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
