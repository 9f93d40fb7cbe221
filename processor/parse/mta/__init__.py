"""Per-MTA and per-provider detectors, tried in ``ORDER``: the first whose guard matches and
whose parse finds events wins. Specific formats come before the generic RFC 3464 reader and the
generic text fallback, which are last."""

from __future__ import annotations

from processor.parse.mta import (
    amazonses,
    amazonworkmail,
    apachejames,
    biglobe,
    courier,
    domino,
    dragonfly,
    exchange,
    exim,
    ezweb,
    fml,
    gateway,
    generic,
    gmail,
    gmx,
    googlegroups,
    kddi,
    mailru,
    messagingserver,
    notes,
    opensmtpd,
    postfix,
    qmail,
    rfc3464,
    sendgrid,
    sendmail,
    verizon,
    yahoo,
    yandex,
    zoho,
)
from processor.parse.mta._common import Detector

ORDER: tuple[Detector, ...] = (
    amazonworkmail,
    amazonses,
    sendgrid,
    googlegroups,
    gmail,
    exchange,
    yahoo,
    zoho,
    courier,
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
    gateway,
    gmx,
    mailru,
    exim,
    qmail,
    yandex,
    postfix,
    sendmail,
    rfc3464,
    generic,
)

__all__ = ["ORDER", "Detector"]
