"""Recover a recipient from a VERP return path: bounces+alice=example.org@sender.example."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

from processor.parse.text import ADDRESS


@cache
def _pattern(prefixes: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True))
    return re.compile(
        rf"^(?:{alternatives})[+\-](?:[^=@+]*[+\-])?(?P<local>[^=@+]+)=(?P<domain>[A-Za-z0-9.\-]+\.[A-Za-z]{{2,63}})@",
        re.IGNORECASE,
    )


def recover(address: str, prefixes: Iterable[str]) -> str:
    """The recipient encoded in a VERP address, or '' if the address is not one."""
    m = _pattern(tuple(prefixes)).match(address.strip().strip("<>"))
    if not m:
        return ""
    candidate = f"{m.group('local')}@{m.group('domain')}"
    return candidate if ADDRESS.fullmatch(candidate) else ""
