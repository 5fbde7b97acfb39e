"""Logging setup: human-readable text, or JSON lines for log shippers.

Job events carry ``job_id``, ``attempt`` and other fields through ``extra=``; the JSON formatter
puts every such field on the line.
"""

from __future__ import annotations

import logging
import sys

import msgspec

# Attributes every LogRecord has; anything else came from ``extra=`` and belongs on the line.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonLines(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extra fields, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return msgspec.json.encode(entry, enc_hook=str).decode()


JsonLines.converter = __import__("time").gmtime


def configure(level: str = "INFO", json_lines: bool = False) -> None:
    """Send Thotto's logs to stderr at ``level``; replaces handlers set by an earlier call."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO; Thotto logs what matters about its Reddit calls itself.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
