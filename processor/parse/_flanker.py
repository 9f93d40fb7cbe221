"""Import flanker once per process, with its start-up noise kept off the terminal.

flanker builds its address-grammar tables with ply on import, which prints a screenful of
"Symbol ... is unreachable" warnings to stderr and costs a few hundred milliseconds. Both are paid
here, once, on first use; every later call returns the cached module.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from functools import cache
from types import ModuleType


@cache
def _import(name: str) -> ModuleType:
    import importlib

    sink = io.StringIO()
    with contextlib.redirect_stderr(sink), contextlib.redirect_stdout(sink), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = importlib.import_module(name)
    for noisy in ("flanker", "ply"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    return module


def flanker_mime() -> ModuleType:
    """The ``flanker.mime`` module."""
    return _import("flanker.mime")


def flanker_address() -> ModuleType:
    """The ``flanker.addresslib.address`` module (address parsing and validation)."""
    return _import("flanker.addresslib.address")
