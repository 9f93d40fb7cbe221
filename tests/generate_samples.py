"""Produce genuine bounces with real MTAs on loopback and save them under samples/generated/.

    python tests/generate_samples.py                # every MTA, into samples/generated/
    python tests/generate_samples.py --only exim    # one MTA (postfix, exim, opensmtpd, sendmail, dma, courier)
    python tests/generate_samples.py --out /tmp/x   # somewhere else (the test suite does this)

Needs root, unshare (util-linux), Debian's postfix, dovecot-imapd and dovecot-lmtpd, and Exim extracted
as .ci/run does.
Every scenario sends one message with its own Message-ID (``<NAME@sender.example>``) from
``bounces@sender.example``; the MTA under test fails it in its own way, and its DSN travels back
to the sender domain, whose mail is delivered by Postfix over LMTP into a Dovecot mailbox. The
generator reads that mailbox over IMAP and saves each DSN, exactly as it landed (with Dovecot's
Return-Path, Delivered-To and Received), under the scenario's name. Exim's DSNs travel through
Postfix to Dovecot, like mail from another host would.

OpenSMTPD, Sendmail, dma (DragonFly Mail Agent) and Courier are Debian binaries unpacked as .ci/run
does (their packages conflict with postfix); OpenSMTPD's, Sendmail's and Courier's DSNs travel
through Postfix to Dovecot too, dma's plain-text bounces go to its smarthost (an SMTP sink), where
they are read.
Where one of them is missing, its scenarios are left out with a note (in CI, it is an error).
Dovecot's LMTP, with the quota plugin, is the final hop for Postfix, Exim and OpenSMTPD.

The remote servers that refuse mail are ``servers.SmtpSink`` instances answering scripted codes.
Every MTA that resolves names asks its own lab DNS server (``servers.NxdomainDns``, bound over
/etc/resolv.conf in the MTA's private mount namespace), which knows no name: the unknown-domain
scenarios (``nowhere.invalid``) get their "no such domain" from it, no query leaves the machine,
and every scenario runs on a machine without any DNS.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import re
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``tests`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests import servers
from tests.servers import (
    Courier,
    Dma,
    Dovecot,
    Exim,
    MailUser,
    NxdomainDns,
    OpenSmtpd,
    Postfix,
    Reply,
    Sendmail,
    SmtpSink,
)

PROJECT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = PROJECT / "samples" / "generated"
SENDER = "bounces@sender.example"
FROM_HEADER = "Example News <news@sender.example>"


@dataclass
class Scenario:
    """One way to make an MTA bounce: whom to send to and what DSNs to wait for."""

    name: str
    rcpts: list[str]
    expect: int = 1
    """How many DSNs this scenario produces (2 for delay warning + final failure)."""
    rcpt_options: list[str] = field(default_factory=list)
    mail_options: list[str] = field(default_factory=list)
    size: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    subject: str = ""
    sender: str = SENDER
    """The envelope sender, where the DSN goes."""

    @property
    def message_id(self) -> str:
        return f"<{self.name}@sender.example>"

    def message(self) -> bytes:
        return servers.make_message(
            mail_from=FROM_HEADER,
            to=", ".join(self.rcpts),
            subject=self.subject or f"Sample message for the {self.name} scenario",
            body=f"This message was sent by the bounce-processor sample generator ({self.name}).\n",
            message_id=self.message_id,
            headers={"X-Campaign-ID": f"sample-{self.name}", **self.headers},
            size=self.size,
        )


@dataclass
class Lab:
    """Everything running: Dovecot (the sender's mailbox), Postfix, Exim and the SMTP sinks."""

    dovecot: Dovecot
    bounces: MailUser
    postfix: Postfix
    exim: Exim | None
    sinks: dict[str, SmtpSink]
    opensmtpd: OpenSmtpd | None = None
    sendmail: Sendmail | None = None
    dma: Dma | None = None
    courier: Courier | None = None
    resolvers: dict[str, NxdomainDns] = field(default_factory=dict)
    """Each MTA's own DNS server (by MTA name, see DNS_MTAS): what it asked is in ``names``."""


DNS_MTAS = ("postfix", "exim", "opensmtpd", "sendmail", "courier")
"""The MTAs that resolve names (dma hands everything to its smarthost); each asks its own
``NxdomainDns``, so a run shows which MTA asked what."""


def _sinks() -> dict[str, SmtpSink]:
    main = SmtpSink(hostname="mx.remote.example")
    main.reply(
        "rcpt-unknown@remote.example",
        "rcpt",
        550,
        "5.1.1 <rcpt-unknown@remote.example>: Recipient address rejected: no such user here",
    )
    main.reply("rcpt-plain@remote.example", "rcpt", 550, "Requested action not taken: mailbox unavailable")
    main.reply("data-spam@remote.example", "data", 554, "5.7.1 Message rejected: content looks like spam (score 12.3)")
    main.reply(
        "disabled@remote.example",
        "rcpt",
        550,
        "5.2.1 <disabled@remote.example>: mailbox disabled, not accepting messages",
    )
    # a full mailbox, for the MTAs without an LMTP client (Courier): for good, and for now
    main.reply("full@remote.example", "rcpt", 552, "5.2.2 <full@remote.example>: mailbox full, quota exceeded")
    main.reply("tempfull@remote.example", "rcpt", 452, "4.2.2 <tempfull@remote.example>: mailbox full, try again later")
    main.reply(
        "greylisted@slow.example", "rcpt", 451, "4.7.1 <greylisted@slow.example>: greylisted, please try again later"
    )
    blocked = SmtpSink(hostname="mx.blocked.example")
    blocked.replies["*"] = Reply("mail", 553, "5.7.1 Sender address rejected: your domain is on our block list")
    return {
        "main": main,
        "size": SmtpSink(hostname="mx.big.example", size_limit=2000),
        "blocked": blocked,
        "refuse": SmtpSink(
            hostname="mx.refuse.example",
            greeting=Reply("connect", 554, "5.7.1 mx.refuse.example: client host blocked, see policy page"),
        ),
        "nodsn": SmtpSink(hostname="mx.nodsn.example", dsn=False),
        # the sender domain's server for SMTPUTF8 DSNs (Dovecot's LMTP does not offer SMTPUTF8)
        "utf8box": SmtpSink(hostname="mx.utf8.sender.example", smtputf8=True),
    }


@contextlib.contextmanager
def lab(
    with_exim: bool,
    keep: bool = False,
    *,
    with_opensmtpd: bool = False,
    with_sendmail: bool = False,
    with_dma: bool = False,
    with_courier: bool = False,
) -> Iterator[Lab]:
    """Start everything; stop it and remove its directories afterwards (unless ``keep``)."""
    sinks = _sinks()
    if with_dma:
        sinks["smarthost"] = _smarthost(sinks["main"])
    for sink in sinks.values():
        sink.start()
    closed_port = servers.free_port()
    dovecot = Dovecot(servers.private_dir("bp-gen-dovecot-"))
    postfix: Postfix | None = None
    exim: Exim | None = None
    opensmtpd: OpenSmtpd | None = None
    sendmail: Sendmail | None = None
    dma: Dma | None = None
    courier: Courier | None = None
    # every MTA's resolver: every name unknown, no query leaves the machine
    resolvers = {mta: NxdomainDns(servers.private_dir(f"bp-gen-dns-{mta}-")) for mta in DNS_MTAS}
    started: list[NxdomainDns] = []
    try:
        for resolver in resolvers.values():
            resolver.start()
            started.append(resolver)
        dovecot.start()
        bounces = dovecot.add_user(SENDER)
        dovecot.add_user("alice@mail.example.com")
        dovecot.add_user("full@mail.example.com", quota_bytes=1)
        # Dovecot's quota_full_tempfail: the same full mailbox answered with 452 4.2.2
        dovecot.add_user("tempfull@mail.example.com", quota_bytes=1, quota_tempfail=True)
        lmtp = f"lmtp:inet:127.0.0.1:{dovecot.lmtp_port}"
        guard_port = servers.free_port()
        postfix = Postfix(
            servers.private_dir("bp-gen-postfix-"),
            routes={
                "sender.example": lmtp,
                "utf8.sender.example": f"smtp:[127.0.0.1]:{sinks['utf8box'].port}",
                "mail.example.com": lmtp,
                "remote.example": f"smtp:[127.0.0.1]:{sinks['main'].port}",
                "slow.example": f"smtp:[127.0.0.1]:{sinks['main'].port}",
                "big.example": f"smtp:[127.0.0.1]:{sinks['size'].port}",
                "blocked.example": f"smtp:[127.0.0.1]:{sinks['blocked'].port}",
                "refuse.example": f"smtp:[127.0.0.1]:{sinks['refuse'].port}",
                "nodsn.example": f"smtp:[127.0.0.1]:{sinks['nodsn'].port}",
                "down.example": f"smtp:[127.0.0.1]:{closed_port}",
                "relay.example": f"smtp:[127.0.0.1]:{guard_port}",
            },
            main={
                # the guard relays for nobody; relay.example must not be a relay domain, since
                # reject_unauth_destination asks the instance-wide trivial-rewrite about it
                "relay_domains": "sender.example mail.example.com",
                # virtual(8) delivers to Maildirs: the "delivered" success DSN
                "virtual_mailbox_domains": "virtual.example.net",
                "virtual_mailbox_base": "{vmail}",
                "virtual_mailbox_maps": "texthash:{vmailbox}",
                "virtual_uid_maps": "static:{uid}",
                "virtual_gid_maps": "static:{gid}",
                "default_transport": "smtp",
                "smtp_dns_support_level": "enabled",
                "smtp_host_lookup": "dns",
                "delay_warning_time": "3s",
                "maximal_queue_lifetime": "12s",
                "bounce_queue_lifetime": "12s",
                "smtputf8_enable": "yes",
            },
            resolv_conf=resolvers["postfix"].resolv_conf,
            extra_services=[
                # a second smtpd that relays for nobody: the "relay denied" server
                f"127.0.0.1:{guard_port} inet n - n - - smtpd -o mynetworks=127.0.0.2/32 "
                "-o smtpd_relay_restrictions=permit_mynetworks,reject_unauth_destination "
                "-o myhostname=guard.example.net -o relay_domains=",
            ],
        )
        vmail = postfix.root / "vmail"
        vmail.mkdir()
        nobody = pwd.getpwnam("nobody")
        os.chown(vmail, nobody.pw_uid, nobody.pw_gid)
        (postfix.config_dir / "vmailbox").write_text("carol@virtual.example.net carol/\n")
        for name, value in list(postfix.main.items()):
            postfix.main[name] = value.format(
                vmail=vmail,
                vmailbox=postfix.config_dir / "vmailbox",
                uid=nobody.pw_uid,
                gid=nobody.pw_gid,
            )
        # a route back to this very Postfix: a mail loop, refused after too many hops
        postfix.routes["loop.example"] = f"smtp:[127.0.0.1]:{postfix.smtp_port}"
        postfix.write_config()
        postfix.start()
        if with_exim:
            exim = Exim(
                servers.private_dir("bp-gen-exim-"),
                routes={
                    "sender.example": postfix.smtp_port,
                    "remote.example": sinks["main"].port,
                    "slow.example": sinks["main"].port,
                    "big.example": sinks["size"].port,
                    "relay.example": guard_port,
                    "down.example": closed_port,
                    "blocked.example": sinks["blocked"].port,
                    "refuse.example": sinks["refuse"].port,
                },
                local_users={"alice": 0, "full": 1},
                delay_warning="3s:1h",
                retry_rule="F,12s,1s",
                lmtp_routes={"mail.example.com": dovecot.lmtp_port},
                resolv_conf=resolvers["exim"].resolv_conf,
            )
            exim.start()
        if with_opensmtpd:
            opensmtpd = _opensmtpd(dovecot, postfix, sinks, closed_port, resolvers["opensmtpd"])
            opensmtpd.start()
        if with_sendmail:
            sendmail = _sendmail(postfix, sinks, closed_port, resolvers["sendmail"])
            sendmail.start()
        if with_dma:
            dma = Dma(servers.private_dir("bp-gen-dma-"), smarthost_port=sinks["smarthost"].port)
        if with_courier:
            courier = _courier(postfix, sinks, closed_port, guard_port, resolvers["courier"])
            courier.start()
        yield Lab(dovecot, bounces, postfix, exim, sinks, opensmtpd, sendmail, dma, courier, resolvers)
    finally:
        if courier is not None:
            courier.stop()
        if sendmail is not None:
            sendmail.stop()
        if opensmtpd is not None:
            opensmtpd.stop()
        if exim is not None:
            exim.stop()
        if postfix is not None:
            postfix.stop()
        dovecot.stop()
        for sink in sinks.values():
            sink.stop()
        for resolver in started:
            resolver.stop()
        for server in (courier, dma, sendmail, opensmtpd, exim, postfix, dovecot):
            if server is not None and not keep:
                shutil.rmtree(server.root, ignore_errors=True)
        if not keep:
            for resolver in resolvers.values():
                shutil.rmtree(resolver.resolv_conf.parent, ignore_errors=True)


def _opensmtpd(
    dovecot: Dovecot, postfix: Postfix, sinks: dict[str, SmtpSink], closed_port: int, dns: NxdomainDns
) -> OpenSmtpd:
    """OpenSMTPD as the bouncing MTA: remote domains go to the sinks, mail.example.com over LMTP
    to Dovecot, DSNs for sender.example through Postfix to Dovecot like Exim's; a message
    temporarily refused for 20 s expires, with a warning after 4 s."""
    return OpenSmtpd(
        servers.private_dir("bp-gen-opensmtpd-"),
        relays={
            "sender.example": postfix.smtp_port,
            "remote.example": sinks["main"].port,
            "slow.example": sinks["main"].port,
            "big.example": sinks["size"].port,
            "blocked.example": sinks["blocked"].port,
            "down.example": closed_port,
        },
        lmtp={"mail.example.com": dovecot.lmtp_port},
        mx_domains=["nowhere.invalid"],
        queue_ttl="20s",
        warn_interval="4s",
        resolv_conf=dns.resolv_conf,
    )


def _smarthost(remote: SmtpSink) -> SmtpSink:
    """dma's one smarthost: it refuses what the ``remote`` sink refuses and accepts dma's bounces
    (dma delivers everything there, its bounces to the sender included)."""
    smarthost = SmtpSink(hostname="smarthost.example")
    smarthost.replies.update(remote.replies)
    return smarthost


def _courier(
    postfix: Postfix, sinks: dict[str, SmtpSink], closed_port: int, guard_port: int, dns: NxdomainDns
) -> Courier:
    """Courier as the bouncing MTA: remote domains go to the sinks (relay.example to the Postfix
    guard that relays for nobody), local users alice and full (a 1-byte quota) have Maildirs,
    DSNs for sender.example through Postfix to Dovecot; a message
    temporarily refused is retried every 2 s, with a delay notice after 4 s, until it expires
    after 20 s."""
    return Courier(
        servers.private_dir("bp-gen-courier-"),
        routes={
            "sender.example": postfix.smtp_port,
            "remote.example": sinks["main"].port,
            "slow.example": sinks["main"].port,
            "big.example": sinks["size"].port,
            "blocked.example": sinks["blocked"].port,
            "refuse.example": sinks["refuse"].port,
            "relay.example": guard_port,
            "down.example": closed_port,
        },
        local_users={"alice": 0, "full": 1},
        queue_time="20s",
        warn_time="4s",
        retry="2s",
        resolv_conf=dns.resolv_conf,
    )


def _sendmail(postfix: Postfix, sinks: dict[str, SmtpSink], closed_port: int, dns: NxdomainDns) -> Sendmail:
    """Sendmail as the bouncing MTA: one mailer per sink (Sendmail's mailers have one port each,
    and only three deliver at once, so there is no sink for a refusal at MAIL FROM),
    DSNs for sender.example through Postfix to Dovecot; a warning after 4 s, expiry after 15 s."""
    return Sendmail(
        servers.private_dir("bp-gen-sendmail-"),
        routes={
            "remote.example": ("esmtp", sinks["main"].port),
            "slow.example": ("esmtp", sinks["main"].port),
            "big.example": ("smtp8", sinks["size"].port),
            "down.example": ("smtp", closed_port),
        },
        relay_domains=["sender.example"],
        relay_port=postfix.smtp_port,
        queue_warn="4s",
        queue_return="15s",
        resolv_conf=dns.resolv_conf,
    )


POSTFIX: list[Scenario] = [
    Scenario("postfix-local-unknown-user", ["nosuchuser@local.example.net"]),
    Scenario("postfix-lmtp-unknown-user", ["nobody@mail.example.com"]),
    Scenario("postfix-unknown-domain", ["someone@nowhere.invalid"]),
    Scenario("postfix-over-quota", ["full@mail.example.com"]),
    Scenario("postfix-message-too-large", ["big@big.example"], size=6000),
    Scenario("postfix-relay-denied", ["someone@relay.example"]),
    Scenario("postfix-remote-rcpt-5xx", ["rcpt-unknown@remote.example"]),
    Scenario("postfix-remote-rcpt-5xx-no-enhanced-code", ["rcpt-plain@remote.example"]),
    Scenario("postfix-remote-data-5xx", ["data-spam@remote.example"]),
    Scenario("postfix-remote-mail-5xx", ["someone@blocked.example"]),
    # Postfix treats a 5xx greeting as "try another server" (smtp_skip_5xx_greeting): deferred
    Scenario("postfix-greeting-5xx-expired", ["someone@refuse.example"], expect=2),
    Scenario("postfix-delay-then-expired", ["greylisted@slow.example"], expect=2),
    Scenario("postfix-connection-refused-expired", ["someone@down.example"], expect=2),
    Scenario(
        "postfix-several-recipients",
        ["nosuchuser@local.example.net", "disabled@remote.example", "alice@mail.example.com"],
        rcpt_options=["NOTIFY=FAILURE", "ORCPT=rfc822;list-member@sender.example"],
    ),
    Scenario("postfix-delivered-notify", ["carol@virtual.example.net"], rcpt_options=["NOTIFY=SUCCESS"]),
    Scenario("postfix-lmtp-relayed-notify", ["alice@mail.example.com"], rcpt_options=["NOTIFY=SUCCESS"]),
    Scenario("postfix-relayed-notify", ["someone@nodsn.example"], rcpt_options=["NOTIFY=SUCCESS"]),
    Scenario(
        "postfix-smtputf8-not-offered",
        ["jörg@remote.example"],
        mail_options=["SMTPUTF8"],
        subject="Grüße from the sample generator",
        sender="bounces@utf8.sender.example",
    ),
]

EXIM: list[Scenario] = [
    Scenario("exim-local-unknown-user", ["nosuchuser@local.example.com"]),
    Scenario("exim-unknown-domain", ["someone@nowhere.invalid"]),
    Scenario("exim-over-quota", ["full@local.example.com"]),
    Scenario("exim-message-too-large", ["big@big.example"], size=6000),
    Scenario("exim-relay-denied", ["someone@relay.example"]),
    Scenario("exim-remote-rcpt-5xx", ["rcpt-unknown@remote.example"]),
    Scenario("exim-remote-data-5xx", ["data-spam@remote.example"]),
    Scenario("exim-delay-then-expired", ["greylisted@slow.example"], expect=2),
    Scenario(
        "exim-several-recipients",
        ["nosuchuser@local.example.com", "disabled@remote.example", "alice@local.example.com"],
    ),
]


# Dovecot LMTP with the quota plugin and unknown users, delivered to by Postfix and Exim
DOVECOT_LMTP: list[Scenario] = [
    # quota_full_tempfail: 452 4.2.2 at end of DATA; Postfix defers, warns, then gives up
    Scenario("postfix-lmtp-over-quota-tempfail", ["tempfull@mail.example.com"], expect=2),
    Scenario("exim-lmtp-unknown-user", ["nobody@mail.example.com"]),
    Scenario("exim-lmtp-over-quota", ["full@mail.example.com"]),
    Scenario("exim-lmtp-over-quota-tempfail", ["tempfull@mail.example.com"], expect=2),
]

POSTFIX_MORE: list[Scenario] = [
    Scenario("postfix-mail-loop-too-many-hops", ["someone@loop.example"]),
]

# more of Exim's own wordings: refusals at the greeting and at MAIL FROM, a bare 550
EXIM_MORE: list[Scenario] = [
    Scenario("exim-greeting-5xx", ["someone@refuse.example"]),
    Scenario("exim-remote-mail-5xx", ["someone@blocked.example"]),
    Scenario("exim-remote-rcpt-5xx-no-enhanced-code", ["rcpt-plain@remote.example"]),
]

# OpenSMTPD 6.8 hands every LMTP error to its queue as temporary: a warning, then expiry. No
# "connection refused" or "greeting 554" scenario: OpenSMTPD backs off such a route for longer than
# the 20 s queue lifetime, so whether a warning precedes the expiry depends on timing.
OPENSMTPD: list[Scenario] = [
    Scenario("opensmtpd-remote-rcpt-5xx", ["rcpt-unknown@remote.example"]),
    Scenario("opensmtpd-remote-rcpt-5xx-no-enhanced-code", ["rcpt-plain@remote.example"]),
    Scenario("opensmtpd-remote-data-5xx", ["data-spam@remote.example"]),
    Scenario("opensmtpd-remote-mail-5xx", ["someone@blocked.example"]),
    Scenario("opensmtpd-message-too-large", ["big@big.example"], size=6000),
    Scenario("opensmtpd-unknown-domain", ["someone@nowhere.invalid"]),
    Scenario("opensmtpd-delay-then-expired", ["greylisted@slow.example"], expect=2),
    Scenario("opensmtpd-lmtp-unknown-user-expired", ["nobody@mail.example.com"], expect=2),
    Scenario("opensmtpd-lmtp-over-quota-expired", ["full@mail.example.com"], expect=2),
    Scenario(
        "opensmtpd-several-recipients",
        ["rcpt-unknown@remote.example", "disabled@remote.example", "alice@mail.example.com"],
    ),
]


SENDMAIL: list[Scenario] = [
    # submitted on the command line (as a local program does): an unknown local user is mailed back
    Scenario("sendmail-local-unknown-user", ["nosuchuser"]),
    Scenario("sendmail-unknown-domain", ["someone@nowhere.invalid"]),
    Scenario("sendmail-remote-rcpt-5xx", ["rcpt-unknown@remote.example"]),
    Scenario("sendmail-remote-rcpt-5xx-no-enhanced-code", ["rcpt-plain@remote.example"]),
    Scenario("sendmail-remote-data-5xx", ["data-spam@remote.example"]),
    Scenario("sendmail-message-too-large", ["big@big.example"], size=6000),
    Scenario("sendmail-delay-then-expired", ["greylisted@slow.example"], expect=2),
    Scenario("sendmail-connection-refused-expired", ["someone@down.example"], expect=2),
    Scenario(
        "sendmail-several-recipients",
        ["rcpt-unknown@remote.example", "disabled@remote.example", "someone-else@remote.example"],
        rcpt_options=["NOTIFY=FAILURE", "ORCPT=rfc822;list-member@sender.example"],
    ),
]


# dma has no queue runner and retries a 4xx for days, so only permanent failures
DMA: list[Scenario] = [
    Scenario("dma-remote-rcpt-5xx", ["rcpt-unknown@remote.example"]),
    Scenario("dma-remote-rcpt-5xx-no-enhanced-code", ["rcpt-plain@remote.example"]),
    Scenario("dma-remote-data-5xx", ["data-spam@remote.example"]),
    Scenario("dma-remote-rcpt-disabled", ["disabled@remote.example"]),
]


# Courier: mail injected with its own sendmail, delivered over SMTP to the sinks; Courier has no
# LMTP client, so a full mailbox is a sink's 552/452 reply
COURIER: list[Scenario] = [
    Scenario("courier-local-unknown-user", ["nosuchuser@courier.example.net"]),
    # Courier defers a delivery into a Maildir over its quota: a warning, then expiry
    Scenario("courier-local-over-quota-expired", ["full@courier.example.net"], expect=2),
    Scenario("courier-remote-rcpt-5xx", ["rcpt-unknown@remote.example"]),
    Scenario("courier-remote-rcpt-5xx-no-enhanced-code", ["rcpt-plain@remote.example"]),
    Scenario("courier-remote-rcpt-disabled", ["disabled@remote.example"]),
    Scenario("courier-remote-data-5xx", ["data-spam@remote.example"]),
    Scenario("courier-remote-mail-5xx", ["someone@blocked.example"]),
    Scenario("courier-greeting-5xx", ["someone@refuse.example"]),
    Scenario("courier-message-too-large", ["big@big.example"], size=6000),
    Scenario("courier-relay-denied", ["someone@relay.example"]),
    Scenario("courier-unknown-domain", ["someone@nowhere.invalid"]),
    Scenario("courier-mailbox-full", ["full@remote.example"]),
    Scenario("courier-mailbox-full-tempfail-expired", ["tempfull@remote.example"], expect=2),
    Scenario("courier-delay-then-expired", ["greylisted@slow.example"], expect=2),
    Scenario("courier-connection-refused-expired", ["someone@down.example"], expect=2),
    Scenario(
        "courier-several-recipients",
        ["rcpt-unknown@remote.example", "disabled@remote.example", "alice@courier.example.net",
         "someone-else@remote.example"],
    ),
]


def _send(submit: Callable[..., dict[str, tuple[int, bytes]]], scenario: Scenario) -> None:
    refused = submit(
        scenario.sender,
        scenario.rcpts,
        scenario.message(),
        rcpt_options=scenario.rcpt_options,
        **({"mail_options": scenario.mail_options} if scenario.mail_options else {}),
    )
    if refused:
        raise servers.ServerError(f"{scenario.name}: the MTA refused at SMTP time: {refused}")


def _assign(messages: list[bytes], scenarios: list[Scenario]) -> dict[str, list[bytes]]:
    by_name: dict[str, list[bytes]] = {s.name: [] for s in scenarios}
    for data in messages:
        for scenario in scenarios:
            if f"{scenario.name}@sender.example".encode() in data:
                by_name[scenario.name].append(data)
                break
    return by_name


def _is_delay(data: bytes) -> bool:
    if b"Envelope expired" in data:  # OpenSMTPD's expiry notice says "delayed" but is final
        return False
    action = re.search(rb"(?im)^Action:\s*(\w+)", data)
    subject = re.search(rb"(?im)^Subject:\s*(.*)$", data)
    return bool(
        (action and action.group(1).lower() == b"delayed") or (subject and b"warning" in subject.group(1).lower())
    )


def _complete(scenario: Scenario, found: list[bytes]) -> bool:
    if scenario.expect == 1:
        return len(found) >= 1
    return any(_is_delay(d) for d in found) and any(not _is_delay(d) for d in found)


def _file_names(name: str, found: list[bytes]) -> list[tuple[str, bytes]]:
    """One file per DSN; for a delayed-then-failed scenario, the first warning and the failure."""
    if len(found) == 1:
        return [(f"{name}.eml", found[0])]
    out = []
    delays = [d for d in found if _is_delay(d)]
    finals = [d for d in found if not _is_delay(d)]
    if delays:
        out.append((f"{name}-delay.eml", delays[0]))
    if finals:
        out.append((f"{name}-final.eml", finals[0]))
    return out


def _mta(scenario: Scenario) -> str:
    """The MTA that bounces in this scenario (the name's first word; also its directory)."""
    return scenario.name.split("-", 1)[0]


MTAS = ("postfix", "exim", "opensmtpd", "sendmail", "dma", "courier")


def _usable(mta: str, missing: Callable[[], str], only: str | None) -> bool:
    """Whether this run includes ``mta``: asked for, and present (a missing one is skipped with
    a note, except in CI, where .ci/run installs it)."""
    if only not in (None, mta):
        return False
    why = missing()
    if why and only is None and not os.environ.get("CI"):
        print(f"skipping the {mta} scenarios: {why}", file=sys.stderr)
        return False
    if why:
        raise servers.ServerError(why)
    return True


def selected(only: str | None = None) -> list[Scenario]:
    """The scenarios a run with ``only`` performs on this machine."""
    chosen = (POSTFIX if only in (None, "postfix") else []) + (EXIM if only in (None, "exim") else [])
    chosen += [s for s in DOVECOT_LMTP + POSTFIX_MORE + EXIM_MORE if only in (None, _mta(s))]
    if _usable("opensmtpd", servers.opensmtpd_missing, only):
        chosen += OPENSMTPD
    if _usable("sendmail", servers.sendmail_missing, only):
        chosen += SENDMAIL
    if _usable("dma", servers.dma_missing, only):
        chosen += DMA
    if _usable("courier", servers.courier_missing, only):
        chosen += COURIER
    return chosen


def _log_story(log: Path, missing: list[Scenario]) -> str:
    """The mail-log lines about the missing scenarios' messages and the DSNs they spawned: the
    queue ids whose message-id is a missing scenario's, then every id a bounce line names."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError as exc:
        return f"({log} not readable: {exc})"
    wanted = {s.message_id for s in missing}
    ids: set[str] = set()
    for line in lines:
        found = re.search(r": ([0-9A-F]{6,}): message-id=(<[^>]*>)", line)
        if found and found.group(2) in wanted:
            ids.add(found.group(1))
    for line in lines:  # "QID: sender non-delivery notification: NEWQID"
        found = re.search(r": ([0-9A-F]{6,}): .*notification: ([0-9A-F]{6,})", line)
        if found and found.group(1) in ids:
            ids.add(found.group(2))
    story = [line for line in lines if any(qid in line for qid in ids)]
    return "\n".join(story) if story else "(no line names them)\n" + "\n".join(lines[-60:])


def _landed(running: Lab, scenarios: list[Scenario]) -> dict[str, list[bytes]]:
    """The DSNs that arrived so far, by scenario."""
    landed = [m for _, m in running.dovecot.messages(running.bounces)]
    # what reached the SMTPUTF8 sink, with the Return-Path a delivery agent would add
    landed += [
        b"Return-Path: <" + env.mail_from.encode() + b">\r\n" + env.data for env in running.sinks["utf8box"].received
    ]
    # dma's bounces, which it hands to its smarthost
    if "smarthost" in running.sinks:
        landed += [
            b"Return-Path: <>\r\n" + env.data for env in running.sinks["smarthost"].received if env.mail_from == ""
        ]
    return _assign(landed, scenarios)


def _wait(running: Lab, scenarios: list[Scenario], timeout: float) -> tuple[dict[str, list[bytes]], list[Scenario]]:
    """Poll until every scenario has its DSNs or ``timeout`` passes: (DSNs by scenario, missing)."""
    deadline = time.monotonic() + timeout
    next_requeue = time.monotonic() + 5
    while True:
        got = _landed(running, scenarios)
        missing = [s for s in scenarios if not _complete(s, got[s.name])]
        if not missing or time.monotonic() > deadline:
            return got, missing
        if time.monotonic() > next_requeue:
            running.postfix.requeue_stranded()
            next_requeue = time.monotonic() + 5
        time.sleep(0.5)


def _submit(running: Lab, scenario: Scenario) -> None:
    mta = _mta(scenario)
    if mta == "postfix":
        _send(running.postfix.submit, scenario)
    elif mta == "exim" and running.exim is not None:
        _send(running.exim.submit, scenario)
    elif mta == "opensmtpd" and running.opensmtpd is not None:
        _send(running.opensmtpd.submit, scenario)
    elif mta == "courier" and running.courier is not None:
        running.courier.inject(scenario.sender, scenario.rcpts, scenario.message())
    elif mta == "dma" and running.dma is not None:
        running.dma.inject(scenario.sender, scenario.rcpts, scenario.message())
    elif mta == "sendmail" and running.sendmail is not None:
        if "@" in scenario.rcpts[0]:
            _send(running.sendmail.submit, scenario)
        else:
            running.sendmail.inject(scenario.sender, scenario.rcpts, scenario.message())


def _why(running: Lab, missing: list[Scenario]) -> str:
    """The missing scenarios, Postfix's queue, their mail-log story and any SMTP sink errors."""
    errors = {name: sink.errors for name, sink in running.sinks.items() if sink.errors}
    opensmtpd_log = ""
    if running.opensmtpd is not None:
        opensmtpd_log = f"\nOpenSMTPD log:\n{servers._tail(running.opensmtpd.log)}"
    return (
        f" for {[s.name for s in missing]}\nqueue: {running.postfix.queue()}\n"
        f"mail log of the missing scenarios:\n{_log_story(running.postfix.log, missing)}\nsink errors: {errors}"
        f"{opensmtpd_log}"
    )


@dataclass
class Generated:
    """What a run wrote, and what each MTA asked the lab's DNS server."""

    files: dict[str, list[Path]]
    """Scenario name -> the .eml files written for it."""
    asked: dict[str, list[str]]
    """MTA name (DNS_MTAS) -> the names its ``NxdomainDns`` was asked about, in order."""


def generate(out: Path, only: str | None = None, timeout: float = 90.0, keep: bool = False) -> Generated:
    """Run the scenarios; write one .eml per DSN under out/<mta>/; return what was written.

    A scenario whose DSN has not arrived after ``timeout`` is sent once more (a lost DSN on a
    loaded machine is the lab's problem, not the MTA's), and its mail-log story is printed; if
    the second message gets no DSN either, ServerError says why."""
    scenarios = selected(only)
    want_exim = only in (None, "exim")
    wanted = {_mta(s) for s in scenarios}
    written: dict[str, list[Path]] = {}
    with lab(
        with_exim=want_exim,
        keep=keep,
        with_opensmtpd="opensmtpd" in wanted,
        with_sendmail="sendmail" in wanted,
        with_dma="dma" in wanted,
        with_courier="courier" in wanted,
    ) as running:
        for scenario in scenarios:
            _submit(running, scenario)
        got, missing = _wait(running, scenarios, timeout)
        if missing:
            print(f"no DSN after {timeout}s; sending them again{_why(running, missing)}", file=sys.stderr)
            for scenario in missing:
                _submit(running, scenario)
            got, missing = _wait(running, scenarios, timeout)
        if missing:  # say why while the servers still run
            raise servers.ServerError(f"after two tries no (or too few) DSNs{_why(running, missing)}")
        asked = {mta: list(resolver.names) for mta, resolver in running.resolvers.items()}
    for scenario in scenarios:
        directory = out / _mta(scenario)
        directory.mkdir(parents=True, exist_ok=True)
        for filename, data in _file_names(scenario.name, got[scenario.name]):
            path = directory / filename
            path.write_bytes(data)
            written.setdefault(scenario.name, []).append(path)
    return Generated(written, asked)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--only", choices=MTAS)
    parser.add_argument("--clean", action="store_true", help="remove out/<mta>/ first")
    parser.add_argument("--keep", action="store_true", help="keep the servers' directories (logs) under /tmp")
    args = parser.parse_args(argv)
    for missing in (
        servers.dovecot_missing(),
        servers.postfix_missing(),
        servers.exim_missing() if args.only in (None, "exim") else "",
        servers.opensmtpd_missing() if args.only == "opensmtpd" else "",
        servers.sendmail_missing() if args.only == "sendmail" else "",
        servers.dma_missing() if args.only == "dma" else "",
        servers.courier_missing() if args.only == "courier" else "",
    ):
        if missing:
            print(f"cannot generate: {missing}", file=sys.stderr)
            return 2
    if args.clean:
        for mta in MTAS:
            if args.only in (None, mta):
                shutil.rmtree(args.out / mta, ignore_errors=True)
    started = time.monotonic()
    written = generate(args.out, args.only, keep=args.keep).files
    for name, paths in written.items():
        for path in paths:
            print(f"{name:45} {path.relative_to(args.out)}")
    print(f"{sum(len(p) for p in written.values())} DSNs in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
