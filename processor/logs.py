"""structlog set-up: the only place that configures logging.

Console output for a terminal, JSON lines for production (``--log-format json``). Every logger in
the project is ``structlog.get_logger(__name__)``; stdlib logging from libraries goes through the
same renderer so that one run prints one format.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, MutableMapping
from typing import Any, Literal


def _import_structlog_without_rich() -> None:
    """Import structlog with rich hidden from it, when neither is loaded yet (a command's start).

    structlog imports rich whenever it is installed, for what this project never uses: rich
    tracebacks (``configure`` asks for plain ones: rich's print every frame's local variables,
    and one can hold a password) and rich reprs of locals in dict tracebacks. That import was
    ~40 ms of every command's start (the daemon's among them). rich itself stays importable: it
    is hidden only while structlog loads (the run report's progress display imports it later)."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # "import rich" raises ImportError
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]


_import_structlog_without_rich()

import structlog  # noqa: E402

LogFormat = Literal["console", "json", "auto"]

_SECRET_KEYS = frozenset({"password", "token", "secret", "authorization", "api_key", "verp_secret"})


_secret_key: dict[str, bool] = {}
"""Key -> whether it looks secret, for the keys seen (the code's own keyword names: a few dozen)."""


def _redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Last line of defence: a value logged under a secret-looking key is never printed."""
    for key in event_dict:
        secret = _secret_key.get(key)
        if secret is None:
            secret = key.lower() in _SECRET_KEYS
            if len(_secret_key) < 10_000:
                _secret_key[key] = secret
        if secret:
            event_dict[key] = "**********"
    return event_dict


def _json_fallback(value: Any) -> Any:
    """What structlog's JSON renderer does with a value JSON has no form for."""
    try:
        return value.__structlog__()
    except AttributeError:
        return repr(value)


_JSON = json.JSONEncoder(default=_json_fallback)


def _json_line(event_dict: Any, **_: Any) -> str:
    """``json.dumps(event_dict, default=...)``, the line structlog's JSONRenderer writes, with one
    encoder for every line (json.dumps makes one per call when given ``default``: 0.7 us a line)."""
    return _JSON.encode(event_dict)


Observer = Callable[[str, MutableMapping[str, Any]], bool]
"""Sees every event logged at an enabled level: (level name, event dict); returning False drops
the line (the event still happened: the observer has counted it)."""

_observers: list[Observer] = []
_settings: dict[str, str] = {"format": "json", "level": "INFO"}


def observe(observer: Observer) -> Callable[[], None]:
    """Register ``observer`` (a terminal progress display, say); returns the function that removes it."""
    _observers.append(observer)
    return lambda: _observers.remove(observer)


def current() -> tuple[str, str]:
    """The format ("console" or "json") and level name that ``configure`` chose."""
    return _settings["format"], _settings["level"]


def _notify_observers(_: Any, method: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for observer in list(_observers):
        if observer(method, event_dict) is False:
            raise structlog.DropEvent
    return event_dict


_json_lines: tuple[logging.StreamHandler[Any], Any] | None = None
"""(handler, renderer) while the format is JSON: see ``_emit``."""

_METHOD_LEVELS = {
    "debug": logging.DEBUG, "info": logging.INFO, "msg": logging.INFO, "warning": logging.WARNING,
    "warn": logging.WARNING, "error": logging.ERROR, "err": logging.ERROR, "exception": logging.ERROR,
    "critical": logging.CRITICAL, "fatal": logging.CRITICAL,
}
"""structlog's method names and the stdlib levels they log at."""


def _emit(logger: Any, method: str, event_dict: MutableMapping[str, Any]) -> Any:
    """The last processor of the project's own events. In JSON, renders the line and writes it to
    the handler's stream (under its lock) here: the same line as through stdlib logging, at under
    half the cost (no LogRecord, and no copy of it, per event; no caller lookup); that is the
    daemon's per-message decision line. Otherwise the event goes on to stdlib logging and the
    handler's formatter. Loggers keep their processors once used (``cache_logger_on_first_use``):
    so the handler and the format are looked up at each event, never kept here."""
    current = _json_lines
    if current is None:
        return structlog.stdlib.ProcessorFormatter.wrap_for_formatter(logger, method, event_dict)
    # The level of the latest ``configure``, as stdlib logging would apply it: a logger cached
    # under an earlier, lower level still filters at its old level only.
    enabled = getattr(logger, "isEnabledFor", None)
    if enabled is not None and not enabled(_METHOD_LEVELS.get(method, logging.INFO)):
        raise structlog.DropEvent
    handler, renderer = current
    line = renderer(logger, method, event_dict)
    handler.acquire()
    try:
        handler.stream.write(line + handler.terminator)
        handler.flush()
    except (OSError, ValueError):  # a closed or broken stream: stdlib logging drops the line too
        pass
    finally:
        handler.release()
    raise structlog.DropEvent


def redirect(stream: Any) -> Any:
    """Send the log lines to ``stream`` from now on (a terminal display that draws below them);
    returns the stream used before, to be given back. Only ``configure``'s handler is changed."""
    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler) and getattr(handler, "_bounce_processor", False):
            return handler.setStream(stream)
    return None


def configure(fmt: LogFormat = "auto", level: str = "INFO", stream: Any = None) -> None:
    """Configure structlog and stdlib logging once per process."""
    out = stream if stream is not None else sys.stderr
    if fmt == "auto":
        fmt = "console" if hasattr(out, "isatty") and out.isatty() else "json"
    _settings.update(format=fmt, level=level.upper())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redact_secrets,
    ]
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer(serializer=_json_line)
        shared.append(structlog.processors.format_exc_info)
    else:
        # plain tracebacks: rich's renderer (structlog's default when rich is installed) prints
        # every frame's local variables, and a local variable can hold a password
        renderer = structlog.dev.ConsoleRenderer(
            colors=hasattr(out, "isatty") and out.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    global _json_lines  # noqa: PLW0603 - the process's logging, configured here only
    handler = logging.StreamHandler(out)
    _json_lines = (handler, renderer) if fmt == "json" else None
    structlog.configure(
        processors=[*shared, _notify_observers, _emit],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )
    handler._bounce_processor = True  # type: ignore[attr-defined]
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer])
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # libraries' chatter at INFO (alembic lists its plugins, uvicorn its access log) stays out
    for noisy in ("alembic", "uvicorn.access", "apscheduler"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
