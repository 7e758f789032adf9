"""Logging for people (``text``) and for journald and log shippers (``json``: one object
per line), with every known secret replaced by ``***`` whatever logger wrote it.

Secrets are registered where they are read (the signing keys, the SMTP password), with the
base64 forms an SMTP AUTH exchange would carry, so even a library's debug log of the
protocol cannot leak one.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
from datetime import UTC, datetime
from urllib.parse import quote, quote_plus

_SECRETS: set[str] = set()
MASK = "***"
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def register_secret(value: str | None, username: str | None = None) -> None:
    """Never log ``value`` (nor its AUTH PLAIN / LOGIN encodings for ``username``)."""
    if not value or len(value) < 4:
        return
    _SECRETS.add(value)
    _SECRETS.add(base64.b64encode(value.encode()).decode())
    for quoted in (quote(value, safe=""), quote_plus(value)):  # as it appears in a URL
        _SECRETS.add(quoted)
    if username:
        plain = f"\0{username}\0{value}".encode()
        _SECRETS.add(base64.b64encode(plain).decode())


def redact(text: str) -> str:
    for secret in sorted(_SECRETS, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class Redactor(logging.Filter):
    """Rewrites each record's message (and traceback) without the registered secrets."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            record.msg = redact(record.getMessage())
            record.args = None
            if record.exc_info and not record.exc_text:
                record.exc_text = logging.Formatter().formatException(record.exc_info)
            if record.exc_text:
                record.exc_text = redact(record.exc_text)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                entry[key] = value if isinstance(value, (int, float, bool)) else str(value)
        if record.exc_info or record.exc_text:
            entry["error"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry, ensure_ascii=False)


def setup_logging(level: int, fmt: str = "text") -> None:
    """Configure the root logger on stderr (the CLI calls this once per command)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(Redactor())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler], force=True)
