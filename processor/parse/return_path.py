"""Recover a recipient from a VERP return path: bounces+alice=example.org@sender.example.

Signing return paths is processor.verp; this module only reads them back.
"""

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


@cache
def _signed_pattern(prefixes: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(p) for p in sorted(prefixes, key=len, reverse=True))
    return re.compile(
        rf"^(?:{alternatives})\+[a-z2-7]{{12}}(?:-[A-Za-z0-9_.]{{1,32}})?=(?P<local>.+)=(?P<domain>[^=@]+)@",
        re.IGNORECASE,
    )


def recover(address: str, prefixes: Iterable[str]) -> str:
    """The recipient encoded in a VERP address (plain, or signed by processor.verp, whose
    signature is checked elsewhere), or '' if the address is not one."""
    address = address.strip().strip("<>")
    key = tuple(prefixes)
    m = _signed_pattern(key).match(address) or _pattern(key).match(address)
    if not m:
        return ""
    candidate = f"{m.group('local')}@{m.group('domain')}"
    return candidate if ADDRESS.fullmatch(candidate) else ""
