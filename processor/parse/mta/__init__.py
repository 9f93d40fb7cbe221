"""Per-MTA and per-provider detectors, tried in ``ORDER``: the first whose guard matches and
whose parse finds events wins. Specific formats come before the generic RFC 3464 reader and the
generic text fallback, which are last."""

from __future__ import annotations

from processor.parse.mta import (
    amazonses,
    apachejames,
    biglobe,
    domino,
    dragonfly,
    exchange,
    exim,
    ezweb,
    fml,
    generic,
    gmail,
    googlegroups,
    kddi,
    messagingserver,
    notes,
    opensmtpd,
    postfix,
    qmail,
    rfc3464,
    sendmail,
    verizon,
    zoho,
)
from processor.parse.mta._common import Detector

ORDER: tuple[Detector, ...] = (
    amazonses,
    googlegroups,
    gmail,
    exchange,
    zoho,
    opensmtpd,
    dragonfly,
    messagingserver,
    domino,
    notes,
    ezweb,
    kddi,
    biglobe,
    verizon,
    apachejames,
    fml,
    exim,
    qmail,
    postfix,
    sendmail,
    rfc3464,
    generic,
)

__all__ = ["ORDER", "Detector"]
