"""Logging setup: human-readable text, or JSON lines for log shippers.

Job events carry ``job_id``, ``attempt`` (and ``account`` for posts) through ``extra=``; the JSON
formatter puts every such field on the line. Secrets never reach the output: the handler's
:class:`RedactSecrets` filter removes them first.
"""

from __future__ import annotations

import logging
import re
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
        if record.exc_info:  # exc_text when a filter (RedactSecrets) rendered it already
            entry["exception"] = record.exc_text or self.formatException(record.exc_info)
        return msgspec.json.encode(entry, enc_hook=str).decode()


JsonLines.converter = __import__("time").gmtime

REDACTED = "[redacted]"
# Field names whose values are secrets, wherever they appear: extra= fields, key=value and
# "key": "value" in messages and tracebacks.
SECRET_NAMES = r"(?:access_token|refresh_token|token|secret|client_secret|password|passwd|api_key|" \
               r"encryption_key|authorization|cookie)"
_NAMED = re.compile(r"(?i)(\b\w*" + SECRET_NAMES + r"\b[\"']?\s*[:=]\s*[\"']?)([^\s\"',;&}]+)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+")
_SECRET_KEY = re.compile(r"(?i)" + SECRET_NAMES + r"$")


class RedactSecrets(logging.Filter):
    """Removes secrets from every record before it is written: values of fields named like
    secrets (``password=...``, ``"refresh_token": "..."``, ``extra={"token": ...}``), bearer and
    basic credentials, and any literal value given in ``secrets`` (e.g. the Reddit app's
    secret and the encryption key from Settings). The message is rendered once and redacted, so
    arguments cannot smuggle a secret past it; tracebacks are redacted too."""

    def __init__(self, secrets: list[str | None] | tuple[str | None, ...] = ()):
        super().__init__()
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """``text`` with every secret replaced by ``[redacted]``."""
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
        return _NAMED.sub(lambda m: m.group(1) + REDACTED, text)

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redact(record.getMessage()), None
        for key, value in list(vars(record).items()):
            if key in _STANDARD:
                continue
            if _SECRET_KEY.search(key):
                setattr(record, key, REDACTED)
            elif isinstance(value, str):
                setattr(record, key, self.redact(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def configure(level: str = "INFO", json_lines: bool = False, secrets: tuple[str | None, ...] = ()) -> None:
    """Send Thotto's logs to stderr at ``level``; replaces handlers set by an earlier call.
    Every record passes :class:`RedactSecrets` (with these literal ``secrets`` too) first."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(RedactSecrets(secrets))
    if json_lines:
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO; Thotto logs what matters about its Reddit calls itself.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))
