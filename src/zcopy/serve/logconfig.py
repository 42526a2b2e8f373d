"""Logging for `zcopy serve`, set up as uvicorn sets it up, so a uvicorn --log-config keeps working unchanged.

The server writes through the loggers uvicorn writes through: ``uvicorn.error`` (start-up, shutdown, warnings,
errors, WebSocket lines) and ``uvicorn.access`` (one line per request). Same names, not a mapping: a
``--log-config`` written for uvicorn, a ``logging.Filter`` an app adds to ``uvicorn.access`` (the usual way to
drop health-check lines), and ``logging.getLogger("uvicorn.error")`` inside an app all keep working.
docs/serve.md#logging has the reasoning and both outputs side by side.

The formatters below make uvicorn's lines (``INFO:     127.0.0.1:51234 - "GET / HTTP/1.1" 200 OK``). A
configuration that names uvicorn's own classes (``uvicorn.logging.DefaultFormatter``) gets them when uvicorn is
installed, and these equivalents when it is not.
"""

from __future__ import annotations

import configparser
import copy
import http
import importlib.util
import json
import logging
import logging.config
import os
import sys
from typing import Any, Literal

TRACE = 5
ERROR_LOGGER = "uvicorn.error"
ACCESS_LOGGER = "uvicorn.access"
ASGI_LOGGER = "uvicorn.asgi"

ACCESS_FORMAT = '%(levelprefix)s %(client_addr)s - "%(request_line)s" %(status_code)s'
# uvicorn's default configuration (its LOGGING_CONFIG): the server's lines on stderr, access lines on stdout.
LOGGING_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "default": {
            "()": "zcopy.serve.logconfig.DefaultFormatter",
            "fmt": "%(levelprefix)s %(message)s",
            "use_colors": None,
        },
        "access": {
            "()": "zcopy.serve.logconfig.AccessFormatter",
            "fmt": ACCESS_FORMAT,
        },
    },
    "handlers": {
        "default": {"formatter": "default", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"},
        "access": {"formatter": "access", "class": "logging.StreamHandler", "stream": "ext://sys.stdout"},
    },
    "loggers": {
        "uvicorn": {"handlers": ["default"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
    },
}

# `zcopy serve DIR` (a static server, nginx's peer, not uvicorn's) keeps its own lines: `zcopy serve: ...`.
STATIC_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"static": {"format": "zcopy serve: %(message)s"}},
    "handlers": {"static": {"formatter": "static", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
    "loggers": {
        "uvicorn": {"handlers": ["static"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["static"], "level": "INFO", "propagate": False},
    },
}

_ANSI = {"red": 31, "green": 32, "yellow": 33, "blue": 34, "cyan": 36, "bright_red": 91, "bright_white": 97}
_LEVEL_COLOURS = {TRACE: "blue", 10: "cyan", 20: "green", 30: "yellow", 40: "red", 50: "bright_red"}
_STATUS_COLOURS = {1: "bright_white", 2: "green", 3: "yellow", 4: "red", 5: "bright_red"}


def _style(text: str, colour: str | None = None, *, bold: bool = False) -> str:
    codes = ([str(_ANSI[colour])] if colour else []) + (["1"] if bold else [])
    return f"\033[{';'.join(codes)}m{text}\033[0m" if codes else text


class DefaultFormatter(logging.Formatter):
    """``%(levelprefix)s``: the level name, a colon and padding to 9 columns (``INFO:     ``), coloured on a TTY
    or when ``use_colors`` says so (uvicorn's --use-colors/--no-use-colors)."""

    def __init__(
        self,
        fmt: str | None = None,
        datefmt: str | None = None,
        style: Literal["%", "{", "$"] = "%",
        use_colors: bool | None = None,
    ) -> None:
        self.use_colors = use_colors if use_colors in (True, False) else sys.stdout.isatty()
        super().__init__(fmt=fmt, datefmt=datefmt, style=style)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record = copy.copy(record)
        name = record.levelname
        pad = " " * (8 - len(name))
        if self.use_colors:
            name = _style(name, _LEVEL_COLOURS.get(record.levelno))
        record.__dict__["levelprefix"] = f"{name}:{pad}"
        return super().formatMessage(record)


class AccessFormatter(DefaultFormatter):
    """An access record's args are uvicorn's: (client_addr, method, full_path, http_version, status_code); this
    adds ``%(client_addr)s``, ``%(request_line)s`` and ``%(status_code)s`` (``200 OK``)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record = copy.copy(record)
        client_addr, method, full_path, http_version, status = record.args  # type: ignore[misc]
        code = int(str(status))
        try:
            phrase = http.HTTPStatus(code).phrase
        except ValueError:
            phrase = ""
        status_code = f"{code} {phrase}"
        request_line = f"{method} {full_path} HTTP/{http_version}"
        if self.use_colors:
            status_code = _style(status_code, _STATUS_COLOURS.get(code // 100))
            request_line = _style(request_line, bold=True)
        record.__dict__.update(client_addr=client_addr, request_line=request_line, status_code=status_code)
        return super().formatMessage(record)


# The handler the default configuration gave `uvicorn.access` (None under a --log-config): while it is the
# logger's only handler, with its own formatter, no filter and no colours, accesslog.py writes the line itself.
default_access: logging.StreamHandler[Any] | None = None


class ConfigError(Exception):
    """--log-config names a file that cannot be read or applied; the message says which and why."""


def _own_classes(name: str) -> str:
    """``uvicorn.logging.X`` → our X when uvicorn is not installed (a uvicorn config must work without it)."""
    prefix = "uvicorn.logging."
    if name.startswith(prefix) and importlib.util.find_spec("uvicorn") is None:
        return "zcopy.serve.logconfig." + name[len(prefix) :]
    return name


def _dict_config(config: dict[str, Any], use_colors: bool | None) -> None:
    config = copy.deepcopy(config)
    for formatter in (config.get("formatters") or {}).values():
        if not isinstance(formatter, dict):
            continue
        for key in ("()", "class"):
            if isinstance(formatter.get(key), str):
                formatter[key] = _own_classes(formatter[key])
        if use_colors in (True, False) and "()" in formatter and "Formatter" in str(formatter["()"]):
            formatter["use_colors"] = use_colors
    logging.config.dictConfig(config)


def _file_config(path: str) -> None:
    parser = configparser.RawConfigParser()
    if not parser.read(path):
        raise ConfigError(f"cannot read --log-config {path}")
    for section in parser.sections():
        if section.startswith("formatter_") and parser.has_option(section, "class"):
            parser.set(section, "class", _own_classes(parser.get(section, "class")))
    logging.config.fileConfig(parser, disable_existing_loggers=False)


def configure(
    log_config: Any = None,
    *,
    log_level: str | int | None = None,
    access_log: bool = True,
    use_colors: bool | None = None,
    static: bool = False,
) -> None:
    """Set up the loggers as uvicorn's Config.configure_logging does: ``log_config`` (a dict, a path to .json,
    .yaml/.yml or .ini, a RawConfigParser or an open file) replaces the default; ``log_level`` then overrides
    the levels; ``access_log=False`` silences ``uvicorn.access``. Raises ConfigError for an unusable file."""
    logging.addLevelName(TRACE, "TRACE")
    if log_config is None:
        _dict_config(STATIC_CONFIG if static else LOGGING_CONFIG, use_colors)
    else:
        try:
            if isinstance(log_config, dict):
                _dict_config(log_config, use_colors)
            elif isinstance(log_config, configparser.RawConfigParser) or hasattr(log_config, "read"):
                logging.config.fileConfig(log_config, disable_existing_loggers=False)
            else:
                path = os.fspath(log_config)
                if path.endswith(".json"):
                    with open(path) as f:
                        _dict_config(json.load(f), use_colors)
                elif path.endswith((".yaml", ".yml")):
                    try:
                        import yaml
                    except ImportError:
                        raise ConfigError(
                            f"--log-config {path}: a YAML file needs PyYAML (pip install 'zcopy[yaml]')"
                        ) from None
                    with open(path) as f:
                        _dict_config(yaml.safe_load(f), use_colors)
                else:
                    _file_config(path)
        except ConfigError:
            raise
        except (OSError, ValueError, TypeError, KeyError, AttributeError, ImportError) as exc:
            raise ConfigError(f"cannot apply --log-config {log_config}: {exc}") from None
        except Exception as exc:  # yaml.YAMLError, configparser.Error...: the file's own mistake
            raise ConfigError(f"cannot apply --log-config {log_config}: {type(exc).__name__}: {exc}") from None
    if log_level is not None:
        from zcopy.serve.logs import level

        n = level(log_level)
        for name in (ERROR_LOGGER, ACCESS_LOGGER, ASGI_LOGGER):
            logging.getLogger(name).setLevel(n)
    if not access_log:
        logging.getLogger(ACCESS_LOGGER).handlers = []
        logging.getLogger(ACCESS_LOGGER).propagate = False
    global default_access
    default_access = None
    handlers = logging.getLogger(ACCESS_LOGGER).handlers
    if log_config is None and not static and len(handlers) == 1 and isinstance(handlers[0], logging.StreamHandler):
        default_access = handlers[0]  # accesslog.py may write this handler's lines itself (see there)


def threshold() -> int:
    """The level below which the server need not even format a message (the error logger's effective level)."""
    return logging.getLogger(ERROR_LOGGER).getEffectiveLevel()
