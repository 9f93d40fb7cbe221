"""Per-MTA and per-provider detectors, tried in ``ORDER``: the first whose guard matches and
whose parse finds events wins. Specific formats come before the generic RFC 3464 reader and the
generic text fallback, which are last."""

from __future__ import annotations

from processor.parse.mta import generic, rfc3464
from processor.parse.mta._common import Detector

ORDER: tuple[Detector, ...] = (
    rfc3464,
    generic,
)

__all__ = ["ORDER", "Detector"]
