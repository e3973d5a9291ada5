"""The server's log, with no secret in it.

The rights portal's links carry secrets in their query (`?token=` for a request's status and for its access
package), and uvicorn's access log writes every request's path with its query. Every handler of the server's
log therefore passes its records through `SecretsFilter`: query values are replaced by `[redacted]` (the names
stay, so the log still says which kind of link was used), and anything shaped like an e-mail address is
replaced too, whatever logger wrote it. Codes and selfies are never logged by facetrail (they travel only in
bodies, which no logger writes).
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

REDACTED = "[redacted]"
_QUERY = re.compile(r"\?([^\s\"']*)")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
_EMAIL = re.compile(r"[^\s@<>\"'(),;:]+@[^\s@<>\"'(),;:]+\.[A-Za-z0-9-]+")


def _redact_parameter(parameter: str) -> str:
    name, equals, _ = parameter.partition("=")
    # A bare value (`?<token>`), or a name that does not look like one, may itself be a secret: it goes too.
    return f"{name}={REDACTED}" if equals and _NAME.match(name) else REDACTED


def _redact_query(match: re.Match[str]) -> str:
    return "?" + "&".join(_redact_parameter(part) for part in match.group(1).split("&") if part)


def redact(text: str) -> str:
    """`text` with every URL query value and every e-mail address replaced by [redacted]."""
    return _EMAIL.sub(REDACTED, _QUERY.sub(_redact_query, text))


class SecretsFilter(logging.Filter):
    """Redacts a record before any handler formats it. uvicorn's access records keep their arguments (its
    formatter reads them: client, method, path with query, HTTP version, status), with the path redacted; every
    other record is reduced to its redacted message, and its traceback, if any, is redacted as well."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, version, status = record.args
            record.args = (client, method, redact(str(path)), version, status)
            return True
        message = redact(record.getMessage())
        record.msg, record.args = message, None
        if record.exc_info and not record.exc_text:
            # The formatter prints exc_text when it is set: the traceback, with its messages redacted too.
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's own log configuration, with SecretsFilter on every handler and facetrail's loggers added."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"secrets": {"()": SecretsFilter}}
    for handler in config["handlers"].values():
        handler["filters"] = ["secrets"]
    config["loggers"]["facetrail"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    return config

