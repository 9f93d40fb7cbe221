"""Real mail servers for the tests, on loopback, with throwaway configurations.

Nothing here is a mock: Dovecot, Postfix and Exim are the Debian binaries, started on free
127.0.0.1 ports with configuration files written into a private temporary directory.

- ``Dovecot``: IMAP (plain) and IMAPS (implicit TLS, with a certificate signed by a CA generated
  here), LMTP for Postfix to deliver into, passwd-file users, Maildir storage owned by the dovecot
  uid/gid. IDLE, MOVE and UIDPLUS are standard in Dovecot. ``stop()``/``start()`` restart it on
  the same ports.
- ``Postfix``: a private instance (``postfix -c DIR``) whose smtpd listens on a free loopback port,
  routes chosen domains with a transport map (to Dovecot's LMTP, to an SMTP sink, ...), and bounces
  what it cannot deliver. ``policy_service(port)`` puts ``check_policy_service`` in front of RCPT.
- ``Exim``: the binary of Debian's exim4-daemon-light extracted with ``dpkg -x`` (Debian's exim4
  and postfix packages conflict, so Exim is not installed; see .ci/run), with its own config.
- ``SmtpSink``: a small SMTP server (asyncio, in a thread) that stores what it accepts and answers
  chosen codes at chosen stages (connect, MAIL, RCPT, DATA) per recipient: the "remote server"
  that MTAs under test talk to.

The fixtures in tests/conftest.py wrap these classes; this module is also used by
tests/generate_samples.py to produce the genuine bounces in samples/.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import email.utils
import errno
import grp
import imaplib
import ipaddress
import json
import os
import pwd
import re
import shlex
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

LOOPBACK = "127.0.0.1"
EXIM_EXTRACTED = Path(os.environ.get("BP_EXIM_ROOT", "/opt/exim4-debian"))
"""Where .ci/run extracts Debian's exim4-daemon-light package (``dpkg -x``)."""


class ServerError(RuntimeError):
    """A test server failed to start or to do what it was asked; the message carries its log."""


# --------------------------------------------------------------------------------------------
# small helpers


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, timeout: float = 15.0, host: str = LOOPBACK) -> None:
    """Block until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise ServerError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


def wait_port_closed(port: int, timeout: float = 15.0, host: str = LOOPBACK) -> None:
    """Block until host:port refuses connections."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                pass
        except OSError:
            return
        time.sleep(0.05)
    raise ServerError(f"{host}:{port} still accepts connections after {timeout}s")


def private_dir(prefix: str) -> Path:
    """A new directory under /tmp that the servers' unprivileged users can traverse (pytest's own
    tmp_path lives in a 0700 directory that dovecot/postfix cannot enter)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    return path


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return f"({path} not readable)"
    return "\n".join(text.splitlines()[-lines:])


def _run(argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 60) -> str:
    proc = subprocess.run(
        list(argv),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=dict(env) if env else None,
        check=False,
    )
    if proc.returncode != 0:
        raise ServerError(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc.stdout + proc.stderr


def _start_daemon(argv: Sequence[str], output: Path, timeout: float = 60) -> None:
    """Run a command that puts a daemon in the background; its output goes to a file (a pipe
    would stay open in the daemon and never reach end of file)."""
    with output.open("ab") as out:
        code = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        ).returncode
    if code != 0:
        raise ServerError(f"{' '.join(argv)} exited {code}:\n{_tail(output)}")


def with_resolv_conf(resolv_conf: Path | None, argv: Sequence[str]) -> list[str]:
    """``argv`` run in a private mount namespace where ``resolv_conf`` is bound over
    /etc/resolv.conf (``argv`` unchanged without one): a daemon started so, and every process it
    forks, asks only the resolver that file names (e.g. ``NxdomainDns``), never the machine's."""
    if resolv_conf is None:
        return list(argv)
    return [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        f'mount --bind {shlex.quote(str(resolv_conf))} /etc/resolv.conf && exec "$@"',
        "sh",
        *argv,
    ]


def make_message(
    *,
    mail_from: str,
    to: str,
    subject: str = "Test message",
    body: str = "Hello.\n",
    message_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    size: int = 0,
) -> bytes:
    """A simple RFC 5322 message (CRLF line ends). ``size`` pads the body to at least that many bytes."""
    domain = mail_from.rpartition("@")[2] or "example.org"
    lines = [
        f"From: {mail_from}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Date: {email.utils.formatdate(localtime=False)}",
        f"Message-ID: {message_id or email.utils.make_msgid(domain=domain)}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
    ]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    text = body
    if size:
        filler = "This line pads the message to a chosen size for the size-limit tests.\n"
        while len(text) < size:
            text += filler
    data = "\r\n".join(lines) + "\r\n\r\n" + text.replace("\r\n", "\n").replace("\n", "\r\n")
    if not data.isascii():  # SMTPUTF8 messages: raw UTF-8 headers (RFC 6532)
        data = data.replace("charset=us-ascii", "charset=utf-8")
    return data.encode("utf-8")


# --------------------------------------------------------------------------------------------
# TLS material


def smtp_submit(
    port: int,
    mail_from: str,
    rcpt_to: Sequence[str] | str,
    message: bytes,
    *,
    rcpt_options: Sequence[str] = (),
    mail_options: Sequence[str] = (),
) -> dict[str, tuple[int, bytes]]:
    """Submit a message to a lab MTA over SMTP; returns the refused recipients (address -> (code,
    text)), empty when all were accepted. Raises smtplib errors for a refused MAIL FROM or DATA."""
    rcpts = [rcpt_to] if isinstance(rcpt_to, str) else list(rcpt_to)
    with smtplib.SMTP(LOOPBACK, port, timeout=30) as client:
        client.ehlo("client.example.org")
        try:
            return dict(client.sendmail(mail_from, rcpts, message, mail_options=list(mail_options),
                                        rcpt_options=list(rcpt_options)))
        except smtplib.SMTPRecipientsRefused as exc:
            return dict(exc.recipients)


def stop_daemon(daemon: subprocess.Popen[bytes] | None, port: int) -> None:
    """Stop a lab MTA run in the foreground (SIGTERM, then SIGKILL) and wait for its port to close."""
    if daemon is None:
        return
    daemon.terminate()
    try:
        daemon.wait(15)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait(5)
    wait_port_closed(port)


@dataclass(frozen=True)

class TlsFiles:
    """A CA and a server certificate it signed (for localhost and 127.0.0.1), as PEM files."""

    ca_cert: Path
    cert: Path
    key: Path
    other_ca_cert: Path
    """A second CA that signed nothing here: a client trusting only it must refuse the server."""


def generate_tls(directory: Path, hostnames: Sequence[str] = ("localhost",)) -> TlsFiles:
    """Write a fresh CA, a server key/certificate signed by it, and an unrelated CA into directory."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)

    def ca(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return key, cert

    ca_key, ca_cert = ca("bounce-processor test CA")
    _, other_ca = ca("bounce-processor unrelated CA")
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(h) for h in hostnames]
    names.append(x509.IPAddress(ipaddress.ip_address(LOOPBACK)))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    files = TlsFiles(
        ca_cert=directory / "ca.pem",
        cert=directory / "server.pem",
        key=directory / "server.key",
        other_ca_cert=directory / "other-ca.pem",
    )
    files.ca_cert.write_bytes(ca_cert.public_bytes(pem))
    files.other_ca_cert.write_bytes(other_ca.public_bytes(pem))
    files.cert.write_bytes(cert.public_bytes(pem))
    files.key.write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    files.key.chmod(0o600)
    return files


# --------------------------------------------------------------------------------------------
# Dovecot


def dovecot_missing() -> str:
    """Why Dovecot cannot run here ("" when it can)."""
    if not shutil.which("dovecot") and not Path("/usr/sbin/dovecot").exists():
        return "Dovecot is not installed (Debian packages dovecot-imapd dovecot-lmtpd)"
    if not Path("/usr/lib/dovecot/imap").exists():
        return "Dovecot's IMAP server is not installed (Debian package dovecot-imapd)"
    if not Path("/usr/lib/dovecot/lmtp").exists():
        return "Dovecot's LMTP server is not installed (Debian package dovecot-lmtpd)"
    for user in ("dovecot", "dovenull"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"the system user {user!r} that Dovecot needs does not exist"
    if os.geteuid() != 0:
        return "Dovecot's test instance must be started as root (it drops privileges itself)"
    return ""


@dataclass(frozen=True)
class MailUser:
    """A Dovecot user: log in with ``name``/``password``; LMTP delivers to ``name`` (an address)."""

    name: str
    password: str


def _child_pids(parent: int) -> list[int]:
    """The process ids whose parent is ``parent`` (from /proc)."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if stat.rsplit(") ", 1)[1].split()[1] == str(parent):
            children.append(int(entry))
    return children


@dataclass
class Dovecot:
    """A private Dovecot instance on loopback (see the module docstring)."""

    root: Path
    imap_port: int = field(default_factory=free_port)
    imaps_port: int = field(default_factory=free_port)
    lmtp_port: int = field(default_factory=free_port)
    host: str = LOOPBACK
    quota: bool = True
    """Load the quota plugin (users get a limit with ``add_user(..., quota_bytes=N)``)."""

    def __post_init__(self) -> None:
        self.tls = generate_tls(self.root / "tls")
        self.uid = pwd.getpwnam("dovecot").pw_uid
        self.gid = grp.getgrnam("dovecot").gr_gid
        self.config = self.root / "dovecot.conf"
        self.passwd = self.root / "users"
        """One passwd-file per user (Dovecot re-reads a changed passwd-file at most once a second,
        so a user added right after another could be unknown for a moment; a new file is not)."""
        self.mail_root = self.root / "mail"
        self.log = self.root / "dovecot.log"
        self._users: dict[str, tuple[str, int]] = {}
        for sub in ("run", "state"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.mail_root.mkdir(parents=True, exist_ok=True)
        os.chown(self.mail_root, self.uid, self.gid)
        self.passwd.mkdir(parents=True, exist_ok=True)
        self.passwd.chmod(0o755)
        self._write_config()

    # -- life cycle --------------------------------------------------------------------------

    @property
    def ca_file(self) -> Path:
        """The CA that signed the server certificate (give it to a verifying client)."""
        return self.tls.ca_cert

    def _write_config(self) -> None:
        plugins = "quota" if self.quota else ""
        quota = "plugin {\n  quota = maildir:User quota\n  quota_rule = *:storage=0\n}\n" if self.quota else ""
        self.config.write_text(
            f"""# throwaway Dovecot for bounce-processor tests
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.log}
protocols = imap lmtp
hostname = imap.example.com
listen = {self.host}
default_login_user = dovenull
default_internal_user = dovecot
first_valid_uid = {min(self.uid, 100)}
first_valid_gid = {min(self.gid, 100)}
mail_location = maildir:~/Maildir
mail_plugins = {plugins}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_verbose = yes
# no delay after a failed login (tests try wrong passwords on purpose)
auth_failure_delay = 0
ssl = yes
ssl_cert = <{self.tls.cert}
ssl_key = <{self.tls.key}
ssl_min_protocol = TLSv1.2
shutdown_clients = yes
# VERP: bounces+anything@domain is delivered to the INBOX of bounces@domain
recipient_delimiter = +
lmtp_save_to_detail_mailbox = no
imap_idle_notify_interval = 1 secs
namespace inbox {{
  inbox = yes
  separator = /
}}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.passwd}/%Lu
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.passwd}/%Lu
  default_fields = uid={self.uid} gid={self.gid} home={self.mail_root}/%u
}}
{quota}service imap-login {{
  inet_listener imap {{
    address = {self.host}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.imaps_port}
    ssl = yes
  }}
}}
service lmtp {{
  inet_listener lmtp {{
    address = {self.host}
    port = {self.lmtp_port}
  }}
}}
service imap {{
  process_limit = 64
}}
service anvil {{
  # no growing auth penalty for 127.0.0.1 after failed logins (Dovecot's documented switch)
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
protocol imap {{
  mail_max_userip_connections = 200
}}
"""
        )

    def _pid(self) -> int | None:
        try:
            return int((self.root / "run" / "master.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def cpu_seconds(self) -> float:
        """CPU seconds (user and system) used so far by this server: its master, the processes it
        runs now (imap, imap-login, auth, ...) and those it has reaped (the master's children's
        times). The difference over a run is what serving that run cost the machine (a process
        that has ended but is not reaped yet is missed until it is)."""
        pid = self._pid()
        if pid is None:
            raise ServerError("Dovecot is not running")
        tick = os.sysconf("SC_CLK_TCK")

        def times(process: int, reaped: bool = False) -> int:
            try:
                fields = Path(f"/proc/{process}/stat").read_text().rsplit(") ", 1)[1].split()
            except OSError:  # (it ended meanwhile)
                return 0
            # fields[11:13]: utime, stime; fields[13:15]: cutime, cstime (children reaped)
            return int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if reaped else 0)

        return (times(pid, reaped=True) + sum(times(child) for child in _child_pids(pid))) / tick

    @property
    def running(self) -> bool:
        pid = self._pid()
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True

    def start(self) -> None:
        """Start the server (on the same ports as before) and wait until IMAP and LMTP answer."""
        if self.running:
            return
        try:
            _start_daemon(["dovecot", "-c", str(self.config)], self.root / "start.out")
            for port in (self.imap_port, self.imaps_port, self.lmtp_port):
                wait_for_port(port)
            # the master writes its pid file after the ports open: until then ``running`` says
            # False, and a second start() would fail with "already running"
            deadline = time.monotonic() + 15
            while not self.running:
                if time.monotonic() > deadline:
                    raise ServerError("Dovecot answers but wrote no master.pid within 15 s")
                time.sleep(0.02)
        except ServerError as exc:
            raise ServerError(f"{exc}\n--- dovecot.log:\n{_tail(self.log)}") from exc

    def stop(self) -> None:
        """Stop the server and wait until its ports are closed. Its imap and imap-login processes
        outlive the master and would keep serving open connections: they are killed too, so that
        clients are disconnected, as when a real server goes down."""
        pid = self._pid()
        if pid is None:
            return
        children = _child_pids(pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            raise ServerError(f"Dovecot (pid {pid}) did not stop:\n{_tail(self.log)}")
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        for port in (self.imap_port, self.imaps_port, self.lmtp_port):
            wait_port_closed(port)

    def restart(self) -> None:
        self.stop()
        self.start()

    def ensure_running(self) -> None:
        """Start the server again if a test stopped it."""
        if not self.running:
            self.start()

    # -- users and mailboxes -----------------------------------------------------------------

    def add_user(
        self, name: str, password: str | None = None, *, quota_bytes: int = 0, quota_tempfail: bool = False
    ) -> MailUser:
        """Create a user (an address such as bounces@sender.example); returns its credentials.
        With ``quota_bytes`` the user's mailbox refuses mail beyond that size (552 5.2.2), or
        with ``quota_tempfail`` too, temporarily (452 4.2.2: Dovecot's quota_full_tempfail)."""
        if name in self._users:
            raise ServerError(f"user {name} exists already")
        password = password or f"pw-{os.urandom(6).hex()}"
        if "/" in name or name.startswith("."):
            raise ServerError(f"not a usable user name: {name!r}")
        self._users[name] = (password, quota_bytes)
        extra = f"userdb_quota_rule=*:bytes={quota_bytes}" if quota_bytes else ""
        if quota_tempfail:
            extra += " userdb_quota_full_tempfail=yes"
        tmp = self.passwd / f".{name.lower()}.new"
        tmp.write_text(f"{name}:{{PLAIN}}{password}::::::{extra}\n")
        tmp.chmod(0o644)
        tmp.replace(self.passwd / name.lower())
        return MailUser(name, password)

    def new_user(self, prefix: str = "user", domain: str = "mail.example.com", *, quota_bytes: int = 0) -> MailUser:
        """A user with a unique name in ``domain`` (tests sharing a server never collide)."""
        return self.add_user(f"{prefix}-{os.urandom(4).hex()}@{domain}", quota_bytes=quota_bytes)

    def maildir(self, user: MailUser | str) -> Path:
        """The user's Maildir on disk (INBOX; folders are .Name sub-directories)."""
        name = user.name if isinstance(user, MailUser) else user
        return self.mail_root / name / "Maildir"

    def connect(self, user: MailUser, *, tls: bool = False, cafile: Path | None = None) -> imaplib.IMAP4:
        """A logged-in imaplib client (plain, or implicit TLS verified against the test CA)."""
        client: imaplib.IMAP4
        if tls:
            context = ssl.create_default_context(cafile=str(cafile or self.ca_file))
            client = imaplib.IMAP4_SSL(self.host, self.imaps_port, ssl_context=context, timeout=15)
        else:
            client = imaplib.IMAP4(self.host, self.imap_port, timeout=15)
        client.login(user.name, user.password)
        return client

    @contextlib.contextmanager
    def session(self, user: MailUser, *, tls: bool = False) -> Iterator[imaplib.IMAP4]:
        """``with dovecot.session(user) as imap:`` a logged-in client, logged out afterwards."""
        client = self.connect(user, tls=tls)
        try:
            yield client
        finally:
            with contextlib.suppress(imaplib.IMAP4.error, OSError):
                client.logout()

    def create_mailbox(self, user: MailUser, mailbox: str) -> None:
        """Create a folder (no error when it exists already)."""
        with self.session(user) as imap:
            typ, data = imap.create(_quote(mailbox))
            if typ != "OK" and b"exists" not in b" ".join(d for d in data if isinstance(d, bytes)):
                raise ServerError(f"CREATE {mailbox} failed: {data!r}")

    def append(self, user: MailUser, message: bytes, mailbox: str = "INBOX", flags: str = "") -> int:
        """APPEND one message; returns its UID (from UIDPLUS's APPENDUID)."""
        return self.append_many(user, [message], mailbox, flags)[0]

    def append_many(
        self, user: MailUser, messages: Sequence[bytes], mailbox: str = "INBOX", flags: str = ""
    ) -> list[int]:
        """APPEND several messages over one connection; returns their UIDs in order."""
        uids = []
        with self.session(user) as imap:
            for message in messages:
                typ, data = imap.append(_quote(mailbox), f"({flags})" if flags else None, None, message)
                if typ != "OK":
                    raise ServerError(f"APPEND to {mailbox} failed: {data!r}")
                text = b" ".join(d for d in data if isinstance(d, bytes)).decode()
                found = re.search(r"APPENDUID \d+ (\d+)", text)
                if not found:
                    raise ServerError(f"APPEND gave no APPENDUID: {text}")
                uids.append(int(found.group(1)))
        return uids

    def messages(self, user: MailUser, mailbox: str = "INBOX") -> list[tuple[int, bytes]]:
        """(UID, full message bytes) of every message in a folder, in UID order; marks nothing \\Seen."""
        with self.session(user) as imap:
            typ, data = imap.select(_quote(mailbox), readonly=True)
            if typ != "OK":
                raise ServerError(f"SELECT {mailbox} failed: {data!r}")
            return _fetch_all(imap)

    def uids(self, user: MailUser, mailbox: str = "INBOX") -> list[int]:
        """UIDs of the messages in a folder."""
        with self.session(user) as imap:
            typ, data = imap.select(_quote(mailbox), readonly=True)
            if typ != "OK":
                raise ServerError(f"SELECT {mailbox} failed: {data!r}")
            typ, data = imap.uid("SEARCH", "ALL")
            raw = data[0] if data and isinstance(data[0], bytes) else b""
            return [int(x) for x in raw.split()]

    def flags(self, user: MailUser, mailbox: str = "INBOX") -> dict[int, set[str]]:
        """UID -> flags of every message in a folder."""
        with self.session(user) as imap:
            imap.select(_quote(mailbox), readonly=True)
            _typ, data = imap.uid("FETCH", "1:*", "(UID FLAGS)")
            out: dict[int, set[str]] = {}
            for item in data:
                if not isinstance(item, bytes):
                    continue
                uid = re.search(rb"UID (\d+)", item)
                flags = re.search(rb"FLAGS \(([^)]*)\)", item)
                if uid:
                    out[int(uid.group(1))] = set(flags.group(1).decode().split()) if flags else set()
            return out

    def mailboxes(self, user: MailUser) -> list[str]:
        """Names of the user's folders."""
        with self.session(user) as imap:
            _typ, data = imap.list()
            names = []
            for item in data:
                if isinstance(item, bytes):
                    name = item.rsplit(b' "/" ', 1)[-1].strip().strip(b'"')
                    names.append(name.decode())
            return sorted(names)

    def wait_for_messages(
        self, user: MailUser, count: int = 1, mailbox: str = "INBOX", timeout: float = 30.0
    ) -> list[tuple[int, bytes]]:
        """Poll until a folder holds at least ``count`` messages; returns them."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.messages(user, mailbox)
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise ServerError(
                    f"{mailbox} of {user.name} has {len(found)} messages, expected {count}, "
                    f"after {timeout}s\n--- dovecot.log:\n{_tail(self.log)}"
                )
            time.sleep(0.2)


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _fetch_all(imap: imaplib.IMAP4) -> list[tuple[int, bytes]]:
    typ, data = imap.uid("FETCH", "1:*", "(UID BODY.PEEK[])")
    if typ != "OK":
        raise ServerError(f"FETCH failed: {data!r}")
    out = []
    for item in data:
        if isinstance(item, tuple):
            uid = re.search(rb"UID (\d+)", item[0])
            if uid:
                out.append((int(uid.group(1)), item[1]))
    return sorted(out)


# --------------------------------------------------------------------------------------------
# SMTP sink: a scriptable "remote server"


@dataclass(frozen=True)
class Reply:
    """An SMTP reply the sink gives at one stage of a transaction."""

    stage: str
    """connect, ehlo, mail, rcpt or data."""
    code: int
    text: str

    def line(self) -> bytes:
        lines = self.text.split("\n")
        out = [f"{self.code}-{t}" for t in lines[:-1]] + [f"{self.code} {lines[-1]}"]
        return ("\r\n".join(out) + "\r\n").encode()


@dataclass(frozen=True)
class Envelope:
    """One message the sink accepted."""

    mail_from: str
    rcpt_to: tuple[str, ...]
    data: bytes


class SmtpSink:
    """A minimal SMTP server on loopback that stores what it accepts and answers scripted replies.

    ``replies[address]`` (lower-case) makes the sink answer that address's transaction with a
    chosen code at a chosen stage; ``size_limit`` is advertised in EHLO and enforced at MAIL
    (552 5.3.4); ``dsn=False`` leaves the DSN extension out of EHLO; ``smtputf8=True`` offers
    SMTPUTF8.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        hostname: str = "mx.remote.example",
        size_limit: int = 0,
        dsn: bool = True,
        smtputf8: bool = False,
        greeting: Reply | None = None,
    ) -> None:
        self.port = port or free_port()
        self.hostname = hostname
        self.size_limit = size_limit
        self.dsn = dsn
        self.smtputf8 = smtputf8
        self.greeting = greeting
        self.replies: dict[str, Reply] = {}
        self.received: list[Envelope] = []
        self.errors: list[str] = []
        """Sessions that ended with an unexpected exception (there should be none)."""
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, name="smtp-sink", daemon=True)

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._handle, LOOPBACK, self.port, reuse_address=True), self._loop
        )
        self._server = future.result(10)

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
                await self._server.wait_closed()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def reply(self, address: str, stage: str, code: int, text: str) -> None:
        """Answer ``address`` with ``code text`` at ``stage`` (rcpt, data or mail)."""
        self.replies[address.lower()] = Reply(stage, code, text)

    def wait_for(self, count: int = 1, timeout: float = 30.0) -> list[Envelope]:
        """Block until the sink has accepted at least ``count`` messages; returns all of them."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.received) >= count, timeout):
                raise ServerError(f"the SMTP sink got {len(self.received)} messages, expected {count}")
            return list(self.received)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as exc:  # a broken session is kept for the test's failure message
            self.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        async def send(data: bytes) -> None:
            writer.write(data)
            await writer.drain()

        if self.greeting is not None:
            await send(self.greeting.line())
            if self.greeting.code >= 400:
                # a refusing server still answers QUIT politely
                while line := await reader.readline():
                    if line.strip().upper() == b"QUIT":
                        await send(b"221 2.0.0 Bye\r\n")
                        return
                    await send(self.greeting.line())
                return
        else:
            await send(f"220 {self.hostname} ESMTP test sink\r\n".encode())
        mail_from = ""
        rcpts: list[str] = []
        while True:
            line = await reader.readline()
            if not line:
                return
            command = line.decode("utf-8", "replace").rstrip("\r\n")
            verb = command.split(" ", 1)[0].upper()
            arg = command[len(verb) :].strip()
            if verb == "EHLO":
                caps = [self.hostname, "PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"]
                if self.size_limit:
                    caps.append(f"SIZE {self.size_limit}")
                if self.dsn:
                    caps.append("DSN")
                if self.smtputf8:
                    caps.append("SMTPUTF8")
                await send(Reply("ehlo", 250, "\n".join(caps)).line())
            elif verb == "HELO":
                await send(f"250 {self.hostname}\r\n".encode())
            elif verb == "MAIL":
                mail_from = _angle(arg)
                rcpts = []
                size = re.search(r"\bSIZE=(\d+)", arg, re.I)
                mail_reply = next((r for r in self.replies.values() if r.stage == "mail"), None)
                if self.size_limit and size and int(size.group(1)) > self.size_limit:
                    await send(b"552 5.3.4 Message size exceeds fixed maximum message size\r\n")
                elif mail_reply is not None:
                    await send(mail_reply.line())
                else:
                    await send(b"250 2.1.0 Ok\r\n")
            elif verb == "RCPT":
                address = _angle(arg)
                scripted = self.replies.get(address.lower())
                if scripted is not None and scripted.stage == "rcpt":
                    await send(scripted.line())
                else:
                    rcpts.append(address)
                    await send(b"250 2.1.5 Ok\r\n")
            elif verb == "DATA":
                if not rcpts:
                    await send(b"554 5.5.1 Error: no valid recipients\r\n")
                    continue
                await send(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                data = await _read_data(reader)
                scripted_data = [self.replies[r.lower()] for r in rcpts if r.lower() in self.replies]
                failing = [r for r in scripted_data if r.stage == "data"]
                if failing:
                    await send(failing[0].line())
                elif self.size_limit and len(data) > self.size_limit:
                    await send(b"552 5.3.4 Message size exceeds fixed maximum message size\r\n")
                else:
                    with self._cond:
                        self.received.append(Envelope(mail_from, tuple(rcpts), data))
                        self._cond.notify_all()
                    await send(b"250 2.0.0 Ok: queued\r\n")
                rcpts = []
            elif verb == "RSET":
                mail_from, rcpts = "", []
                await send(b"250 2.0.0 Ok\r\n")
            elif verb == "NOOP":
                await send(b"250 2.0.0 Ok\r\n")
            elif verb == "QUIT":
                await send(b"221 2.0.0 Bye\r\n")
                return
            else:
                await send(b"502 5.5.2 Error: command not recognized\r\n")


def _angle(arg: str) -> str:
    found = re.search(r"<([^>]*)>", arg)
    if found:
        return found.group(1)
    return arg.split(":", 1)[-1].strip().split(" ")[0]


async def _read_data(reader: asyncio.StreamReader) -> bytes:
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("connection closed in DATA")
        if line in (b".\r\n", b".\n"):
            break
        if line.startswith(b".."):
            line = line[1:]
        lines.append(line)
    return b"".join(lines)


# --------------------------------------------------------------------------------------------
# Postfix


def postfix_missing() -> str:
    """Why Postfix cannot run here ("" when it can)."""
    if not Path("/usr/sbin/postfix").exists():
        return "Postfix is not installed (Debian package postfix)"
    try:
        pwd.getpwnam("postfix")
        grp.getgrnam("postdrop")
    except KeyError:
        return "the postfix user or postdrop group does not exist"
    if os.geteuid() != 0:
        return "Postfix's test instance must be started as root"
    return ""


_MASTER_CF = """\
# service  type  private unpriv chroot wakeup maxproc command
{listen}   inet  n       -      n      -      -       smtpd
pickup     unix  n       -      n      60     1       pickup
cleanup    unix  n       -      n      -      0       cleanup
qmgr       unix  n       -      n      300    1       qmgr
rewrite    unix  -       -      n      -      -       trivial-rewrite
bounce     unix  -       -      n      -      0       bounce
defer      unix  -       -      n      -      0       bounce
trace      unix  -       -      n      -      0       bounce
verify     unix  -       -      n      -      1       verify
flush      unix  n       -      n      1000?  0       flush
proxymap   unix  -       -      n      -      -       proxymap
proxywrite unix  -       -      n      -      1       proxymap
smtp       unix  -       -      n      -      -       smtp
relay      unix  -       -      n      -      -       smtp
showq      unix  n       -      n      -      -       showq
error      unix  -       -      n      -      -       error
retry      unix  -       -      n      -      -       error
discard    unix  -       -      n      -      -       discard
local      unix  -       n      n      -      -       local
virtual    unix  -       n      n      -      -       virtual
lmtp       unix  -       -      n      -      -       lmtp
anvil      unix  -       -      n      -      1       anvil
scache     unix  -       -      n      -      1       scache
postlog    unix-dgram n  -      n      -      1       postlogd
"""


@dataclass
class Postfix:
    """A private Postfix instance on loopback (``postfix -c DIR``).

    Mail for a domain goes where ``routes[domain]`` says, a Postfix transport such as
    ``lmtp:inet:127.0.0.1:2400`` (Dovecot) or ``smtp:[127.0.0.1]:2525`` (an SMTP sink); mail for
    any other domain fails at once with a 5.4.4 DSN unless ``main`` names another
    ``default_transport``. Addresses in ``local_domain`` go to Postfix's local(8), which knows no
    user there and so bounces every one of them ("unknown user").
    """

    root: Path
    routes: dict[str, str] = field(default_factory=dict)
    hostname: str = "mx.example.net"
    local_domain: str = "local.example.net"
    smtp_port: int = field(default_factory=free_port)
    main: dict[str, str] = field(default_factory=dict)
    """Extra main.cf parameters (override the defaults below)."""
    extra_services: list[str] = field(default_factory=list)
    """Extra master.cf lines (for example a second smtpd with different restrictions)."""
    resolv_conf: Path | None = None
    """A resolv.conf for the instance (bound over /etc/resolv.conf in a private mount namespace),
    e.g. ``NxdomainDns.resolv_conf``; None: the machine's resolver."""

    def __post_init__(self) -> None:
        self.config_dir = self.root / "etc"
        self.queue_dir = self.root / "queue"
        self.data_dir = self.root / "data"
        self.log = self.root / "maillog"
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.queue_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        postfix = pwd.getpwnam("postfix")
        os.chown(self.data_dir, postfix.pw_uid, postfix.pw_gid)
        self._started = False
        self.write_config()

    def defaults(self) -> dict[str, str]:
        return {
            "compatibility_level": "3.6",
            "config_directory": str(self.config_dir),
            "queue_directory": str(self.queue_dir),
            "data_directory": str(self.data_dir),
            "command_directory": "/usr/sbin",
            "daemon_directory": "/usr/lib/postfix/sbin",
            "meta_directory": "/etc/postfix",
            "shlib_directory": "/usr/lib/postfix",
            "mail_owner": "postfix",
            "setgid_group": "postdrop",
            "maillog_file": str(self.log),
            "maillog_file_prefixes": str(self.root),
            "myhostname": self.hostname,
            "mydomain": self.hostname.split(".", 1)[-1],
            "myorigin": "$myhostname",
            "mydestination": self.local_domain,
            "local_recipient_maps": "",
            "alias_maps": "",
            "alias_database": "",
            "inet_interfaces": LOOPBACK,
            "inet_protocols": "ipv4",
            "mynetworks": "127.0.0.0/8",
            "relay_domains": " ".join(sorted({domain.lstrip(".") for domain in self.routes})),
            "transport_maps": f"texthash:{self.config_dir}/transport",
            "default_transport": "error:5.4.4 test instance: no route to this domain",
            "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
            "smtpd_recipient_restrictions": "",
            "smtpd_banner": "$myhostname ESMTP",
            "smtp_dns_support_level": "disabled",
            "lmtp_host_lookup": "native",
            "smtp_host_lookup": "native",
            "biff": "no",
            "append_dot_mydomain": "no",
            "queue_run_delay": "1s",
            "minimal_backoff_time": "1s",
            "maximal_backoff_time": "2s",
            "smtp_connect_timeout": "5s",
            "lmtp_connect_timeout": "5s",
            "delay_warning_time": "0",
            "maximal_queue_lifetime": "5d",
            "bounce_queue_lifetime": "5d",
            "smtputf8_enable": "no",
            "notify_classes": "",
            "message_size_limit": "10240000",
        }

    def write_config(self) -> None:
        """(Re)write main.cf, master.cf and the transport map from the current attributes."""
        params = {**self.defaults(), **self.main}
        (self.config_dir / "main.cf").write_text("".join(f"{name} = {value}\n" for name, value in params.items()))
        master = _MASTER_CF.format(listen=f"{LOOPBACK}:{self.smtp_port}")
        master += "".join(line.rstrip("\n") + "\n" for line in self.extra_services)
        (self.config_dir / "master.cf").write_text(master)
        (self.config_dir / "transport").write_text(
            "".join(f"{domain} {nexthop}\n" for domain, nexthop in sorted(self.routes.items()))
        )
        for name in ("main.cf", "master.cf", "transport"):
            (self.config_dir / name).chmod(0o644)

    def _postfix(self, *args: str) -> str:
        return _run(["/usr/sbin/postfix", "-c", str(self.config_dir), *args])

    def start(self) -> None:
        """Start the instance and wait until its smtpd answers."""
        try:
            _start_daemon(
                with_resolv_conf(self.resolv_conf, ["/usr/sbin/postfix", "-c", str(self.config_dir), "start"]),
                self.root / "start.out",
            )
            wait_for_port(self.smtp_port)
        except ServerError as exc:
            raise ServerError(f"{exc}\n--- maillog:\n{_tail(self.log)}") from exc
        self._started = True

    def stop(self) -> None:
        if not self._started:
            return
        with contextlib.suppress(ServerError):
            self._postfix("stop")
        wait_port_closed(self.smtp_port)
        self._started = False

    def reload(self) -> None:
        """Rewrite the configuration and make the running instance use it."""
        self.write_config()
        self._postfix("reload")
        # smtpd processes of the old generation linger; wait until new ones answer.
        time.sleep(0.5)
        wait_for_port(self.smtp_port)

    def configure(self, **params: str) -> None:
        """Set main.cf parameters and reload."""
        self.main.update(params)
        self.reload()

    @contextlib.contextmanager
    def configured(self, **params: str) -> Iterator[None]:
        """``with postfix.configured(name=value, ...):`` main.cf parameters for the block only
        (the session's Postfix is shared: tests restore what they change)."""
        saved = dict(self.main)
        self.configure(**params)
        try:
            yield
        finally:
            self.main = saved
            self.reload()

    def route(self, domain: str, nexthop: str) -> None:
        """Send mail for ``domain`` to ``nexthop`` (a transport:destination) from now on."""
        self.routes[domain] = nexthop
        self.reload()

    @contextlib.contextmanager
    def policy_service(self, port: int, host: str = LOOPBACK) -> Iterator[None]:
        """``with postfix.policy_service(port):`` smtpd asks the policy server at host:port at
        RCPT TO (``smtpd_recipient_restrictions = check_policy_service inet:host:port``)."""
        with self.configured(
            smtpd_recipient_restrictions=f"check_policy_service inet:{host}:{port}",
            smtpd_policy_service_timeout=self.main.get("smtpd_policy_service_timeout", "10s"),
        ):
            yield

    def submit(
        self,
        mail_from: str,
        rcpt_to: Sequence[str] | str,
        message: bytes,
        *,
        rcpt_options: Sequence[str] = (),
        mail_options: Sequence[str] = (),
        port: int | None = None,
    ) -> dict[str, tuple[int, bytes]]:
        """Submit a message over SMTP; returns the refused recipients (address -> (code, text)),
        empty when all were accepted. Raises smtplib errors for a refused MAIL FROM or DATA."""
        return smtp_submit(port or self.smtp_port, mail_from, rcpt_to, message, rcpt_options=rcpt_options,
                           mail_options=mail_options)

    def queue(self) -> list[dict[str, object]]:
        """The messages in the queue (``postqueue -j``)."""
        out = _run(["/usr/sbin/postqueue", "-c", str(self.config_dir), "-j"])
        return [json.loads(line) for line in out.splitlines() if line.startswith("{")]

    def flush(self) -> None:
        """Attempt delivery of every queued message now (``postqueue -f``)."""
        _run(["/usr/sbin/postqueue", "-c", str(self.config_dir), "-f"])

    def requeue_stranded(self) -> None:
        """Flush the queue when a message waits in the incoming queue. A message that qmgr found
        locked by a delivery agent ("skipped, still being delivered") is put back there, and qmgr
        scans incoming only on new mail or at its 300 s wake-up."""
        if any(entry.get("queue_name") == "incoming" for entry in self.queue()):
            self.flush()

    def wait_queue_empty(self, timeout: float = 30.0) -> None:
        """Block until Postfix has delivered or bounced everything it holds."""
        deadline = time.monotonic() + timeout
        while self.queue():
            if time.monotonic() > deadline:
                raise ServerError(f"Postfix queue not empty after {timeout}s:\n{_tail(self.log)}")
            time.sleep(0.2)


# --------------------------------------------------------------------------------------------
# Exim


def exim_binary() -> Path | None:
    """Exim 4 (an installed exim4, or Debian's exim4-daemon-light extracted under EXIM_EXTRACTED)."""
    for candidate in (
        os.environ.get("BP_EXIM_BIN", ""),
        str(EXIM_EXTRACTED / "usr/sbin/exim4"),
        shutil.which("exim4") or "",
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def exim_missing() -> str:
    """Why Exim cannot run here ("" when it can)."""
    binary = exim_binary()
    if binary is None:
        return (
            f"Exim is not available: extract Debian's exim4-daemon-light into {EXIM_EXTRACTED} "
            "(apt-get download exim4-daemon-light && dpkg -x exim4-daemon-light_*.deb "
            f"{EXIM_EXTRACTED}; see .ci/run)"
        )
    try:
        pwd.getpwnam("Debian-exim")
    except KeyError:
        return "the system user Debian-exim that Debian's Exim binary needs does not exist (see .ci/run)"
    if os.geteuid() != 0:
        return "Exim's test instance must be started as root"
    probe = subprocess.run([str(binary), "-bV"], capture_output=True, text=True, check=False)
    if "Exim version" not in probe.stdout:
        return f"{binary} does not run: {(probe.stdout + probe.stderr).strip()[:300]}"
    return ""


class _ListeningMta:
    """What the MTAs that listen on loopback share: a daemon started in the foreground and waited
    for on its SMTP port, stopped, and offered mail over SMTP."""

    smtp_port: int
    _daemon: subprocess.Popen[bytes] | None

    def _spawn(self, argv: Sequence[str], output: Path, logs: Callable[[], str]) -> None:
        """Start ``argv`` (its output appended to ``output``) and wait for the SMTP port; a daemon
        that does not come up raises with ``logs()``, the tails of its logs."""
        with output.open("ab") as out:
            self._daemon = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_for_port(self.smtp_port)
        except ServerError as exc:
            raise ServerError(f"{exc}\n{logs()}") from exc

    def stop(self) -> None:
        stop_daemon(self._daemon, self.smtp_port)
        self._daemon = None

    def submit(
        self,
        mail_from: str,
        rcpt_to: Sequence[str] | str,
        message: bytes,
        *,
        rcpt_options: Sequence[str] = (),
        mail_options: Sequence[str] = (),
    ) -> dict[str, tuple[int, bytes]]:
        """Submit a message over SMTP; returns the refused recipients (empty when all accepted)."""
        return smtp_submit(self.smtp_port, mail_from, rcpt_to, message, rcpt_options=rcpt_options,
                           mail_options=mail_options)


@dataclass
class Exim(_ListeningMta):
    """A private Exim instance on loopback with its own configuration file (``exim -C``).

    ``routes[domain] = port``: mail for that domain goes over SMTP to 127.0.0.1:port. Addresses
    at ``local_domain`` are delivered to Maildirs under root/mailboxes for the users listed in
    ``local_users`` (user -> quota in bytes, 0 for none); any other local part fails with
    "Unknown user", as with Exim's default configuration (its last router, ``localuser``, sets
    ``cannot_route_message = Unknown user``; so does Debian's exim4-config). Every other domain
    goes through a DNS lookup (``dnslookup`` router; "Unrouteable address" when it finds none),
    asking the machine's resolver or the one ``resolv_conf`` names.
    """

    root: Path
    routes: dict[str, int] = field(default_factory=dict)
    hostname: str = "exim.example.net"
    local_domain: str = "local.example.com"
    local_users: dict[str, int] = field(default_factory=dict)
    smtp_port: int = field(default_factory=free_port)
    message_size_limit: str = "10M"
    delay_warning: str = "24h"
    retry_rule: str = "F,2h,15m; G,16h,1h,1.5; F,4d,6h"
    lmtp_routes: dict[str, int] = field(default_factory=dict)
    """domain -> port: mail for that domain is delivered over LMTP to 127.0.0.1:port (Dovecot)."""
    resolv_conf: Path | None = None
    """A resolv.conf for the daemon (bound over /etc/resolv.conf in a private mount namespace),
    e.g. ``NxdomainDns.resolv_conf``; None: the machine's resolver."""

    def __post_init__(self) -> None:
        binary = exim_binary()
        if binary is None:
            raise ServerError(exim_missing())
        self.binary = binary
        self.config = self.root / "exim.conf"
        self.spool = self.root / "spool"
        self.log_dir = self.root / "log"
        self.mailboxes = self.root / "mailboxes"
        self.pid_file = self.root / "exim.pid"
        self._daemon: subprocess.Popen[bytes] | None = None
        exim = pwd.getpwnam("Debian-exim")
        for directory in (self.spool, self.log_dir, self.mailboxes):
            directory.mkdir(parents=True, exist_ok=True)
            os.chown(directory, exim.pw_uid, exim.pw_gid)
            directory.chmod(0o750 if directory != self.mailboxes else 0o777)
        self.write_config()

    @property
    def mainlog(self) -> Path:
        return self.log_dir / "mainlog"

    def write_config(self) -> None:
        ports = "".join(f"{domain} {port}\n" for domain, port in sorted(self.routes.items()))
        (self.root / "ports").write_text(ports)
        # users: name -> name (the looked-up value is untainted and names the Maildir);
        # quotas: name -> bytes.
        (self.root / "users").write_text("".join(f"{user}: {user}\n" for user in sorted(self.local_users)))
        (self.root / "quotas").write_text(
            "".join(f"{user}: {quota}\n" for user, quota in sorted(self.local_users.items()))
        )
        route_list = ";".join(f"{domain} 127.0.0.1 byname" for domain in sorted(self.routes))
        self.config.write_text(
            f"""# throwaway Exim for bounce-processor tests
primary_hostname = {self.hostname}
exim_path = {self.binary}
qualify_domain = {self.hostname}
domainlist local_domains = {self.local_domain}
hostlist relay_from_hosts = 127.0.0.1
local_interfaces = 127.0.0.1
daemon_smtp_ports = {self.smtp_port}
spool_directory = {self.spool}
log_file_path = {self.log_dir}/%slog
pid_file_path = {self.pid_file}
message_size_limit = {self.message_size_limit}
delay_warning = {self.delay_warning}
never_users = root
keep_environment =
trusted_users = root
host_lookup =
rfc1413_hosts =
tls_advertise_hosts =
acl_smtp_rcpt = acl_check_rcpt
acl_smtp_data = acl_check_data
timeout_frozen_after = 1h
ignore_bounce_errors_after = 1h

begin acl

acl_check_rcpt:
  accept  hosts = :
  accept  hosts = +relay_from_hosts
  deny    message = relay not permitted

acl_check_data:
  accept

begin routers

to_remote_test_hosts:
  driver = manualroute
  domains = {" : ".join(sorted(self.routes)) or "!*"}
  route_list = {route_list or "* 127.0.0.1 byname"}
  transport = remote_smtp
  self = send
  no_more

{self._lmtp_router()}dnslookup:
  driver = dnslookup
  domains = ! +local_domains
  transport = remote_smtp
  ignore_target_hosts = 0.0.0.0 : 127.0.0.0/8
  no_more

# the last router, as in Exim's default configuration: an address it cannot route is an
# unknown local user, and says so
local_user:
  driver = accept
  domains = +local_domains
  local_parts = lsearch;{self.root}/users
  transport = local_maildir
  cannot_route_message = Unknown user

begin transports

remote_smtp:
  driver = smtp
  port = ${{lookup{{$domain}}lsearch{{{self.root}/ports}}{{$value}}{{25}}}}
  hosts_try_chunking =
  hosts_try_prdr =

{self._lmtp_transport()}local_maildir:
  driver = appendfile
  directory = {self.mailboxes}/$local_part_data/Maildir
  maildir_format
  create_directory
  user = Debian-exim
  group = Debian-exim
  mode = 0660
  quota = ${{lookup{{$local_part}}lsearch{{{self.root}/quotas}}{{$value}}{{0}}}}
  delivery_date_add
  envelope_to_add
  return_path_add

begin retry

*  quota
*  *  {self.retry_rule}

begin rewrite
"""
        )
        self.config.chmod(0o644)

    def _lmtp_router(self) -> str:
        """The router for ``lmtp_routes`` ("" without any)."""
        if not self.lmtp_routes:
            return ""
        route_list = ";".join(f"{domain} 127.0.0.1 byname" for domain in sorted(self.lmtp_routes))
        return (
            "to_lmtp_test_hosts:\n  driver = manualroute\n"
            f"  domains = {' : '.join(sorted(self.lmtp_routes))}\n"
            f"  route_list = {route_list}\n  transport = lmtp_tcp\n  self = send\n  no_more\n\n"
        )

    def _lmtp_transport(self) -> str:
        """LMTP over TCP: Exim's smtp transport with ``protocol = lmtp`` ("" without routes)."""
        if not self.lmtp_routes:
            return ""
        (self.root / "lmtp_ports").write_text(
            "".join(f"{domain} {port}\n" for domain, port in sorted(self.lmtp_routes.items()))
        )
        return (
            "lmtp_tcp:\n  driver = smtp\n  protocol = lmtp\n"
            f"  port = ${{lookup{{$domain}}lsearch{{{self.root}/lmtp_ports}}{{$value}}{{24}}}}\n\n"
        )

    def _exim(self, *args: str, input_data: bytes | None = None) -> str:
        proc = subprocess.run(
            [str(self.binary), "-C", str(self.config), *args],
            input=input_data,
            capture_output=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise ServerError(
                f"exim {' '.join(args)} exited {proc.returncode}: {proc.stdout!r}{proc.stderr!r}\n"
                f"--- mainlog:\n{_tail(self.mainlog)}\n--- paniclog:\n{_tail(self.log_dir / 'paniclog')}"
            )
        return (proc.stdout + proc.stderr).decode(errors="replace")

    def check_config(self) -> None:
        self._exim("-bV")

    def start(self, queue_interval: str = "1s") -> None:
        """Start the daemon (listening, and running the queue every ``queue_interval``)."""
        self.check_config()
        self._spawn(
            with_resolv_conf(
                self.resolv_conf, [str(self.binary), "-C", str(self.config), "-bdf", f"-q{queue_interval}"]
            ),
            self.root / "daemon.out",
            lambda: f"--- paniclog:\n{_tail(self.log_dir / 'paniclog')}\n--- mainlog:\n{_tail(self.mainlog)}",
        )


    def queue_size(self) -> int:
        return int(self._exim("-bpc").strip() or "0")

    def wait_queue_empty(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while self.queue_size():
            if time.monotonic() > deadline:
                raise ServerError(f"Exim queue not empty after {timeout}s:\n{_tail(self.mainlog)}")
            time.sleep(0.2)


# --------------------------------------------------------------------------------------------
# OpenSMTPD

OPENSMTPD_EXTRACTED = Path(os.environ.get("BP_OPENSMTPD_ROOT", "/opt/opensmtpd-debian"))
"""Where .ci/run extracts Debian's opensmtpd package (``dpkg -x``; it conflicts with postfix)."""


def _smtpd_binary() -> Path:
    return OPENSMTPD_EXTRACTED / "usr/sbin/smtpd"


def _root_with_unshare(server: str, why: str) -> str:
    """Why a server that runs in a private mount namespace cannot start here ("" when it can)."""
    if os.geteuid() != 0:
        return f"{server}'s test instance must be started as root"
    if not shutil.which("unshare"):
        return f"unshare (util-linux) is needed to {why}"
    return ""


def opensmtpd_missing() -> str:
    """Why OpenSMTPD cannot run here ("" when it can)."""
    if not _smtpd_binary().is_file():
        return (
            f"OpenSMTPD is not available: extract Debian's opensmtpd into {OPENSMTPD_EXTRACTED} "
            "(apt-get download opensmtpd && dpkg -x opensmtpd_*.deb DIR; see .ci/run)"
        )
    for user in ("opensmtpd", "opensmtpq"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"the system user {user!r} that OpenSMTPD needs does not exist (see .ci/run)"
    return _root_with_unshare("OpenSMTPD", "give OpenSMTPD private spool and run directories")


@dataclass
class OpenSmtpd(_ListeningMta):
    """A private OpenSMTPD instance on loopback, Debian's binary extracted with ``dpkg -x``.

    OpenSMTPD's spool (/var/spool/smtpd), control socket (/run), chroot (/var/lib/opensmtpd) and
    helpers (/usr/libexec/opensmtpd) are compiled-in paths, so the daemon runs in its own mount
    and UTS namespace (``unshare``) where private directories are bind-mounted over those paths
    and the host name is ``hostname``: the machine's own directories are never touched.

    ``relays[domain] = port``: mail for that domain goes over SMTP to 127.0.0.1:port;
    ``lmtp[domain] = port``: delivered over LMTP to 127.0.0.1:port with the recipient address as
    RCPT TO; ``mx_domains`` are relayed by MX look-up (the machine's resolver); any other
    recipient is refused at RCPT.
    """

    root: Path
    relays: dict[str, int] = field(default_factory=dict)
    lmtp: dict[str, int] = field(default_factory=dict)
    mx_domains: list[str] = field(default_factory=list)
    hostname: str = "opensmtpd.example.net"
    smtp_port: int = field(default_factory=free_port)
    queue_ttl: str = "4d"
    warn_interval: str = "4h"
    resolv_conf: Path | None = None
    """A resolv.conf for the daemon (bound over /etc/resolv.conf), e.g. ``NxdomainDns.resolv_conf``."""

    def __post_init__(self) -> None:
        missing = opensmtpd_missing()
        if missing:
            raise ServerError(missing)
        self.config = self.root / "smtpd.conf"
        self.log = self.root / "smtpd.log"
        self._daemon: subprocess.Popen[bytes] | None = None
        spool = self.root / "spool" / "smtpd"
        empty = self.root / "varlib" / "opensmtpd" / "empty"
        for directory in (spool, empty, self.root / "run"):
            directory.mkdir(parents=True, exist_ok=True)
        spool.chmod(0o711)
        (self.root / "mailboxes").mkdir(exist_ok=True)
        self.write_config()

    def write_config(self) -> None:
        (self.root / "vusers").write_text("".join(f"@{domain} nobody\n" for domain in sorted(self.lmtp)))
        lines = [
            "# throwaway OpenSMTPD for bounce-processor tests\n",
            f"queue ttl {self.queue_ttl}\n",
            f"bounce warn-interval {self.warn_interval}\n",
            f"table vusers file:{self.root}/vusers\n",
            f"listen on {LOOPBACK} port {self.smtp_port} hostname {self.hostname}\n",
        ]
        for domain, port in sorted(self.relays.items()):
            lines.append(f'action "relay-{domain}" relay host smtp://{LOOPBACK}:{port} helo {self.hostname}\n')
            lines.append(f'match from any for domain "{domain}" action "relay-{domain}"\n')
        for domain, port in sorted(self.lmtp.items()):
            lines.append(f'action "lmtp-{domain}" lmtp "{LOOPBACK}:{port}" rcpt-to virtual <vusers>\n')
            lines.append(f'match from any for domain "{domain}" action "lmtp-{domain}"\n')
        if self.mx_domains:
            lines.append(f'action "mx" relay helo {self.hostname}\n')
            for domain in self.mx_domains:
                lines.append(f'match from any for domain "{domain}" action "mx"\n')
        self.config.write_text("".join(lines))
        self.config.chmod(0o644)

    def _namespace(self, *command: str) -> list[str]:
        """``command`` inside a private mount and UTS namespace with OpenSMTPD's paths mapped."""
        binds = [
            (self.root / "spool", "/var/spool"),
            (self.root / "varlib", "/var/lib"),
            (self.root / "run", "/run"),
            (OPENSMTPD_EXTRACTED / "usr/libexec", "/usr/libexec"),
        ]
        if self.resolv_conf is not None:
            binds.append((self.resolv_conf, "/etc/resolv.conf"))
        script = f"hostname {self.hostname} && " + " && ".join(
            f"mount --bind {shlex.quote(str(src))} {dst}" for src, dst in binds
        )
        return [
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "sh",
            "-c",
            f'{script} && exec "$@"',
            "sh",
            *command,
        ]

    def check_config(self) -> None:
        _run(self._namespace(str(_smtpd_binary()), "-n", "-f", str(self.config)))

    def start(self) -> None:
        """Start the daemon in the foreground (``-d``, logging to smtpd.log) and wait for its port."""
        self.check_config()
        self._spawn(self._namespace(str(_smtpd_binary()), "-d", "-f", str(self.config)), self.log,
                    lambda: f"--- smtpd.log:\n{_tail(self.log)}")



# --------------------------------------------------------------------------------------------
# Sendmail

SENDMAIL_EXTRACTED = Path(os.environ.get("BP_SENDMAIL_ROOT", "/opt/sendmail-debian"))
"""Where .ci/run extracts Debian's sendmail-bin, sendmail-base and sendmail-cf (``dpkg -x``)."""

SENDMAIL_MAILERS = ("esmtp", "smtp8", "smtp")
"""The SMTP mailers of Sendmail's smtp family that ``Sendmail.routes`` can point at a port each
(``relay`` carries DSNs to ``relay_port``; ``dsmtp`` only delivers on demand, so it is unused)."""


def _sendmail_binary() -> Path:
    return SENDMAIL_EXTRACTED / "usr/libexec/sendmail/sendmail"


def sendmail_missing() -> str:
    """Why Sendmail cannot run here ("" when it can)."""
    if not _sendmail_binary().is_file() or not (SENDMAIL_EXTRACTED / "usr/share/sendmail/cf/m4/cf.m4").is_file():
        return (
            f"Sendmail is not available: extract Debian's sendmail-bin, sendmail-base and sendmail-cf into "
            f"{SENDMAIL_EXTRACTED} (apt-get download ... && dpkg -x ...; see .ci/run)"
        )
    if not shutil.which("m4"):
        return "m4 is needed to build Sendmail's configuration (Debian package m4)"
    return _root_with_unshare("Sendmail", "give Sendmail its own host name")


@dataclass
class Sendmail(_ListeningMta):
    """A private Sendmail instance on loopback: Debian's binary extracted with ``dpkg -x`` (its
    package conflicts with postfix), a configuration built with m4 from Debian's sendmail-cf, all
    files under ``root``. It runs as a foreground daemon (``-bD``) that also runs the queue every
    second, in its own UTS namespace so that its host name is ``hostname``.

    ``routes[domain] = (mailer, port)``: mail for that domain goes over SMTP to 127.0.0.1:port
    with that mailer of SENDMAIL_MAILERS (each mailer has one port); mail for ``relay_domains``
    (the sender's) goes to ``relay_port``; other domains by DNS; unqualified addresses are local
    users looked up with getpwnam ("User unknown" for a name the machine does not know).
    """

    root: Path
    routes: dict[str, tuple[str, int]] = field(default_factory=dict)
    relay_domains: list[str] = field(default_factory=list)
    relay_port: int = 25
    hostname: str = "sendmail.example.net"
    smtp_port: int = field(default_factory=free_port)
    queue_warn: str = "4h"
    queue_return: str = "5d"
    resolv_conf: Path | None = None
    """A resolv.conf for Sendmail (bound over /etc/resolv.conf), e.g. ``NxdomainDns.resolv_conf``."""

    def __post_init__(self) -> None:
        missing = sendmail_missing()
        if missing:
            raise ServerError(missing)
        self.config = self.root / "sendmail.cf"
        self.queue_dir = self.root / "queue"
        self.log = self.root / "sendmail.log"
        self._daemon: subprocess.Popen[bytes] | None = None
        self.queue_dir.mkdir(parents=True, exist_ok=True)
        self.queue_dir.chmod(0o700)
        self.write_config()

    def _binary(self, *args: str) -> list[str]:
        """Sendmail with our configuration, run under the instance's host name (and resolver)."""
        setup = f"hostname {shlex.quote(self.hostname)}"
        if self.resolv_conf is not None:
            setup += f" && mount --bind {shlex.quote(str(self.resolv_conf))} /etc/resolv.conf"
        return [
            "unshare",
            "--uts",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            f'{setup} && exec "$@"',
            "sh",
            str(_sendmail_binary()),
            "-C",
            str(self.config),
            *args,
        ]

    def write_config(self) -> None:
        ports: dict[str, int] = {}
        for domain, (mailer, port) in self.routes.items():
            if mailer not in SENDMAIL_MAILERS:
                raise ServerError(f"{domain}: mailer {mailer!r} is not one of {SENDMAIL_MAILERS}")
            if ports.setdefault(mailer, port) != port:
                raise ServerError(f"mailer {mailer} cannot go to two ports ({ports[mailer]} and {port})")
        closed = ports.get("smtp", 25)
        args = {name: ports.get(name, closed) for name in SENDMAIL_MAILERS}
        table = {domain: f"{mailer}:[127.0.0.1]" for domain, (mailer, _port) in self.routes.items()}
        table.update({domain: "relay:[127.0.0.1]" for domain in self.relay_domains})
        (self.root / "mailertable").write_text("".join(f"{d} {t}\n" for d, t in sorted(table.items())))
        (self.root / "aliases").write_text("postmaster: root\nMAILER-DAEMON: postmaster\n")
        for name in ("local-host-names", "helpfile"):
            (self.root / name).touch()
        cf = SENDMAIL_EXTRACTED / "usr/share/sendmail/cf"
        root = self.root
        mc = f"""divert(-1)
divert(0)dnl
include(`{cf}/m4/cf.m4')dnl
VERSIONID(`bounce-processor test instance')dnl
OSTYPE(`linux')dnl
define(`confDOMAIN_NAME', `{self.hostname}')dnl
define(`confDONT_PROBE_INTERFACES', `True')dnl
define(`QUEUE_DIR', `{root}/queue')dnl
define(`STATUS_FILE', `{root}/statistics')dnl
define(`ALIAS_FILE', `{root}/aliases')dnl
define(`confPID_FILE', `{root}/sendmail.pid')dnl
define(`confCW_FILE', `-o {root}/local-host-names')dnl
define(`confHELP_FILE', `{root}/helpfile')dnl
define(`confHOST_STATUS_DIRECTORY', `')dnl
define(`confTO_QUEUEWARN', `{self.queue_warn}')dnl
define(`confTO_QUEUERETURN', `{self.queue_return}')dnl
define(`confMIN_QUEUE_AGE', `0')dnl
define(`confDONT_BLAME_SENDMAIL', `MapInUnsafeDirPath,GroupWritableDirPathSafe')dnl
define(`ESMTP_MAILER_ARGS', `TCP $h {args["esmtp"]}')dnl
define(`SMTP8_MAILER_ARGS', `TCP $h {args["smtp8"]}')dnl
define(`SMTP_MAILER_ARGS', `TCP $h {args["smtp"]}')dnl
define(`RELAY_MAILER_ARGS', `TCP $h {self.relay_port}')dnl
FEATURE(`mailertable', `hash -o {root}/mailertable')dnl
FEATURE(`nocanonify')dnl
FEATURE(`accept_unresolvable_domains')dnl
DAEMON_OPTIONS(`Port={self.smtp_port}, Addr=127.0.0.1, Name=MTA')dnl
MAILER(`local')dnl
MAILER(`smtp')dnl
"""
        (self.root / "sendmail.mc").write_text(mc)
        built = subprocess.run(
            ["m4", str(self.root / "sendmail.mc")], capture_output=True, text=True, check=False, timeout=60
        )
        if built.returncode != 0 or built.stderr:
            raise ServerError(f"m4 could not build sendmail.cf: {built.stderr}")
        self.config.write_text(built.stdout)
        self.config.chmod(0o644)
        makemap = SENDMAIL_EXTRACTED / "usr/libexec/sendmail/makemap"
        with (self.root / "mailertable").open("rb") as source:
            subprocess.run(
                [str(makemap), "-C", str(self.config), "hash", str(self.root / "mailertable")],
                stdin=source,
                capture_output=True,
                check=True,
                timeout=60,
            )
        _run(self._binary("-bi"))

    def start(self) -> None:
        """Start the daemon in the foreground (``-bD``, running the queue every second)."""
        self._spawn(self._binary("-bD", "-q1s"), self.log, lambda: f"--- sendmail.log:\n{_tail(self.log)}")


    def inject(self, mail_from: str, rcpt_to: Sequence[str], message: bytes) -> None:
        """Submit on the command line, as a local program does (``sendmail -f FROM -oi -oem``):
        an error such as an unknown local user is mailed back as a DSN instead of refused."""
        proc = subprocess.run(
            self._binary("-f", mail_from, "-oi", "-oem", "--", *rcpt_to),
            input=message,
            capture_output=True,
            timeout=60,
            check=False,
        )
        if proc.returncode not in (0, 67):  # 67 (EX_NOUSER): an unknown user, mailed back all the same
            raise ServerError(f"sendmail exited {proc.returncode}: {proc.stdout!r}{proc.stderr!r}")


# --------------------------------------------------------------------------------------------
# DragonFly Mail Agent (dma)

DMA_EXTRACTED = Path(os.environ.get("BP_DMA_ROOT", "/opt/dma-debian"))
"""Where .ci/run extracts Debian's dma package (``dpkg -x``; it conflicts with postfix)."""


def dma_missing() -> str:
    """Why dma cannot run here ("" when it can)."""
    if not (DMA_EXTRACTED / "usr/sbin/dma").is_file():
        return f"dma is not available: extract Debian's dma into {DMA_EXTRACTED} (see .ci/run)"
    try:
        pwd.getpwnam("mail")
    except KeyError:
        return "the system user 'mail' that dma runs its queue as does not exist"
    return _root_with_unshare("dma", "give dma its own /etc/dma")


@dataclass
class Dma:
    """The DragonFly Mail Agent, a small sendmail-compatible MTA without a daemon: it delivers
    every message, and its own plain-text bounces, to one smarthost (127.0.0.1:smarthost_port).

    Its configuration file is the compiled-in /etc/dma/dma.conf, so each run happens in a private
    mount namespace where an overlay over /etc (upper directory under ``root``) adds it; the
    machine's /etc is never written.
    """

    root: Path
    smarthost_port: int
    mailname: str = "dma.example.net"

    def __post_init__(self) -> None:
        missing = dma_missing()
        if missing:
            raise ServerError(missing)
        mail = pwd.getpwnam("mail")
        self.spool = self.root / "spool"
        for directory in (self.root / "etc" / "dma", self.root / "etc-work", self.spool):
            directory.mkdir(parents=True, exist_ok=True)
        os.chown(self.spool, mail.pw_uid, mail.pw_gid)
        self.spool.chmod(0o770)
        (self.root / "aliases").write_text("")
        (self.root / "etc" / "dma" / "dma.conf").write_text(
            f"SMARTHOST {LOOPBACK}\nPORT {self.smarthost_port}\nSPOOLDIR {self.spool}\n"
            f"ALIASES {self.root}/aliases\nMAILNAME {self.mailname}\n"
        )

    def inject(self, mail_from: str, rcpt_to: Sequence[str], message: bytes) -> None:
        """Submit on the command line (``dma -f FROM RCPT...``); dma delivers before it returns."""
        overlay = f"lowerdir=/etc,upperdir={self.root}/etc,workdir={self.root}/etc-work"
        proc = subprocess.run(
            [
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                f'mount -t overlay overlay -o {shlex.quote(overlay)} /etc && exec "$@"',
                "sh",
                str(DMA_EXTRACTED / "usr/sbin/dma"),
                "-f",
                mail_from,
                "--",
                *rcpt_to,
            ],
            input=message,
            capture_output=True,
            timeout=120,
            check=False,
        )
        if proc.returncode != 0:
            raise ServerError(f"dma exited {proc.returncode}: {proc.stdout!r}{proc.stderr!r}")


# --------------------------------------------------------------------------------------------
# Courier

COURIER_EXTRACTED = Path(os.environ.get("BP_COURIER_ROOT", "/opt/courier-debian"))
"""Where .ci/run extracts Debian's courier-base, courier-mta, courier-authlib and
courier-authlib-userdb (``dpkg -x``; courier-mta conflicts with postfix)."""

COURIER_SPOOL_DIRS = ("allfilters", "filters", "msgq", "msgs", "sts", "tmp", "track")
"""Courier's queue directories under /var/lib/courier (the package's dpkg-statoverride modes)."""


def courier_missing() -> str:
    """Why Courier cannot run here ("" when it can)."""
    needed = ("usr/lib/courier/courier/courierd", "usr/lib/courier-authlib/libauthuserdb.so.0")
    if not all((COURIER_EXTRACTED / path).exists() for path in needed):
        return (
            f"Courier is not available: extract Debian's courier-base, courier-mta, courier-authlib and "
            f"courier-authlib-userdb into "
            f"{COURIER_EXTRACTED} (apt-get download ... && dpkg -x ...; see .ci/run)"
        )
    try:
        pwd.getpwnam("courier")
        grp.getgrnam("courier")
    except KeyError:
        return "the system user and group 'courier' that Courier's queue runs as do not exist (see .ci/run)"
    return _root_with_unshare("Courier", "give Courier its own /etc/courier and queue")


@dataclass
class Courier:
    """A private Courier mail server: Debian's binaries extracted with ``dpkg -x``, its scheduler
    ``courierd`` run in the foreground, mail injected with Courier's own ``sendmail``.

    Courier's paths are compiled in (/usr/lib/courier, /etc/courier, /var/lib/courier,
    /run/courier), so every command runs in a private mount and UTS namespace (``unshare``): a
    read-only overlay puts the extracted /usr over the machine's, an overlay over /etc (upper
    directory under ``root``) adds /etc/courier, private directories are bound over /var/lib and
    /run, and the host name is ``hostname``. The machine's own directories are never written.

    ``routes[domain] = port``: mail for that domain goes over SMTP to 127.0.0.1:port
    (Courier's esmtproutes); other domains by DNS (``resolv_conf``). ``local_users[name] =
    quota_bytes`` are the mailboxes of ``hostname`` (Courier's userdb, served by its authdaemond;
    0: no quota), delivered to Maildirs under ``root``/home owned by nobody; any other local name
    is unknown. A temporary failure is retried every ``retry`` until ``queue_time``, with a delay
    notice after ``warn_time``.
    """

    root: Path
    routes: dict[str, int] = field(default_factory=dict)
    local_users: dict[str, int] = field(default_factory=dict)
    hostname: str = "courier.example.net"
    queue_time: str = "1w"
    warn_time: str = "4h"
    retry: str = "5m"
    resolv_conf: Path | None = None
    """A resolv.conf for Courier (bound over /etc/resolv.conf), e.g. ``NxdomainDns.resolv_conf``."""

    def __post_init__(self) -> None:
        missing = courier_missing()
        if missing:
            raise ServerError(missing)
        self.etc = self.root / "etc" / "courier"
        self.log = self.root / "courierd.log"
        self.auth_log = self.root / "authdaemond.log"
        self._daemon: subprocess.Popen[bytes] | None = None
        self._authdaemon: subprocess.Popen[bytes] | None = None
        courier = pwd.getpwnam("courier")
        authdaemon = self.root / "run" / "courier" / "authdaemon"
        for directory in (self.root / "etc-work", authdaemon):
            directory.mkdir(parents=True, exist_ok=True)
        if not self.etc.exists():
            shutil.copytree(COURIER_EXTRACTED / "etc/courier", self.etc, symlinks=True)
        spool = self.root / "varlib" / "courier"
        for name in COURIER_SPOOL_DIRS:
            (spool / name).mkdir(parents=True, exist_ok=True)
        for directory in (spool, *(spool / name for name in COURIER_SPOOL_DIRS), authdaemon.parent, authdaemon):
            os.chown(directory, courier.pw_uid, courier.pw_gid)
            directory.chmod(0o770 if directory.name == "tmp" else 0o750)
        self.write_config()

    def write_config(self) -> None:
        """Courier's one-line control files, the routes, and its aliases database."""
        settings = {
            "me": self.hostname,
            "defaultdomain": self.hostname,
            "locals": f"localhost\n{self.hostname}",
            "dsnfrom": f'"Courier mail server at {self.hostname}" <@>',
            "esmtphelo": self.hostname,
            "queuetime": self.queue_time,
            "warntime": self.warn_time,
            "retryalpha": self.retry,
            "retrybeta": "1",
            "retrygamma": self.retry,
            "retrymaxdelta": "0",
            "esmtproutes": "\n".join(f"{d}: [{LOOPBACK}],{p}" for d, p in sorted(self.routes.items())),
        }
        for name, value in settings.items():
            (self.etc / name).write_text(value + "\n")
        environment = (COURIER_EXTRACTED / "etc/courier/courierd").read_text()
        # no STARTTLS towards the lab's sinks, which do not offer it
        (self.etc / "courierd").write_text(environment.replace("ESMTP_USE_STARTTLS=1", "ESMTP_USE_STARTTLS=0"))
        _run(self._namespace("/usr/sbin/makealiases"))
        self._write_userdb()

    def _write_userdb(self) -> None:
        """The local mailboxes: a Maildir each (owned by nobody) in Courier's userdb, which its
        authdaemond (module authuserdb only: the machine's own users are never looked at) serves."""
        (self.etc / "authdaemonrc").write_text(
            'authmodulelist="authuserdb"\ndaemons=1\nauthdaemonvar=/run/courier/authdaemon\n'
            'DEBUG_LOGIN=0\nDEFAULTOPTIONS=""\n'
        )
        nobody = pwd.getpwnam("nobody")
        entries = []
        for name, quota in sorted(self.local_users.items()):
            home = self.root / "home" / name
            maildir = home / "Maildir"
            for directory in (home, maildir, maildir / "cur", maildir / "new", maildir / "tmp"):
                directory.mkdir(parents=True, exist_ok=True)
                os.chown(directory, nobody.pw_uid, nobody.pw_gid)
            fields = f"uid={nobody.pw_uid}|gid={nobody.pw_gid}|home={home}|mail={maildir}"
            if quota:
                fields += f"|quota={quota}S"
            entries.append(f"{name}\t{fields}\n")
        userdb = self.etc / "userdb"
        userdb.write_text("".join(entries))
        userdb.chmod(0o600)
        _run(self._namespace("/usr/sbin/makeuserdb"))

    def _namespace(self, *command: str) -> list[str]:
        """``command`` inside a private mount and UTS namespace with Courier's paths mapped."""
        root = shlex.quote(str(self.root))
        steps = [
            f"mount -t overlay overlay -o ro,lowerdir={shlex.quote(str(COURIER_EXTRACTED / 'usr'))}:/usr /usr",
            f"mount -t overlay overlay -o lowerdir=/etc,upperdir={root}/etc,workdir={root}/etc-work /etc",
            f"mount --bind {root}/varlib /var/lib",
            f"mount --bind {root}/run /run",
            f"hostname {shlex.quote(self.hostname)}",
        ]
        if self.resolv_conf is not None:
            steps.append(f"mount --bind {shlex.quote(str(self.resolv_conf))} /etc/resolv.conf")
        return [
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "sh",
            "-c",
            " && ".join(steps) + ' && exec "$@"',
            "sh",
            *command,
        ]

    def start(self) -> None:
        """Start authdaemond (which submit and local delivery ask about local users), then the
        scheduler, courierd, in the foreground with the environment of its courierd file (as
        courierctl.start does), logging to authdaemond.log and courierd.log."""
        with self.auth_log.open("ab") as out:
            self._authdaemon = subprocess.Popen(
                self._namespace("/usr/lib/courier/courier-authlib/authdaemond"),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        socket_path = self.root / "run" / "courier" / "authdaemon" / "socket"
        deadline = time.monotonic() + 15
        while not socket_path.exists():
            if self._authdaemon.poll() is not None or time.monotonic() > deadline:
                raise ServerError(f"authdaemond did not open {socket_path}:\n{_tail(self.auth_log)}")
            time.sleep(0.1)
        with self.log.open("ab") as out:
            self._daemon = subprocess.Popen(
                self._namespace(
                    "env",
                    "-i",
                    "/bin/sh",
                    "-c",
                    "set -a; . /etc/courier/courierd; exec /usr/lib/courier/courier/courierd",
                ),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        time.sleep(0.5)
        if self._daemon.poll() is not None:
            raise ServerError(f"courierd exited {self._daemon.returncode}:\n{_tail(self.log)}")

    def stop(self) -> None:
        """Stop courierd with the delivery modules it started, then authdaemond (process groups)."""
        for daemon in (self._daemon, self._authdaemon):
            if daemon is None or daemon.poll() is not None:
                continue
            with contextlib.suppress(ProcessLookupError):
                os.killpg(daemon.pid, signal.SIGTERM)
            try:
                daemon.wait(15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(daemon.pid, signal.SIGKILL)
                daemon.wait(5)
        self._daemon = self._authdaemon = None

    def inject(self, mail_from: str, rcpt_to: Sequence[str], message: bytes) -> None:
        """Submit on the command line with Courier's ``sendmail -f FROM RCPT...``, as a local
        program does (the lab's sender domain does not exist in DNS, which SMTP would check)."""
        proc = subprocess.run(
            self._namespace("/usr/sbin/sendmail", "-f", mail_from, "--", *rcpt_to),
            input=message,
            capture_output=True,
            timeout=60,
            check=False,
        )
        if proc.returncode != 0:
            raise ServerError(f"Courier's sendmail exited {proc.returncode}: {proc.stdout!r}{proc.stderr!r}")


# --------------------------------------------------------------------------------------------
# A DNS server that knows no name


class NxdomainDns:
    """A DNS server on a loopback address's port 53 (UDP) that answers every query with NXDOMAIN:
    MTAs whose resolv.conf names it learn that a domain does not exist without any query leaving
    the machine. ``resolv_conf`` is a resolv.conf naming it, to bind over /etc/resolv.conf in a
    private mount namespace."""

    def __init__(self, directory: Path, address: str | None = None) -> None:
        self._fixed_address = address is not None
        self.address = address or self._random_address()
        self.resolv_conf = directory / "resolv.conf"
        self._write_resolv_conf()
        self.queries = 0
        self.names: list[str] = []
        """The names asked about, in order (lower case, without the final dot)."""
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._thread = threading.Thread(target=self._serve, name="nxdomain-dns", daemon=True)

    @staticmethod
    def _random_address() -> str:
        return f"127.0.53.{2 + int.from_bytes(os.urandom(1), 'big') % 250}"

    def _write_resolv_conf(self) -> None:
        self.resolv_conf.write_text(f"nameserver {self.address}\noptions attempts:1 timeout:2\n")
        self.resolv_conf.chmod(0o644)

    def start(self) -> None:
        """Listen; without a fixed address, on another random one while the chosen one is taken
        (several servers run at once: one per MTA, and other test runs)."""
        for _ in range(50):
            try:
                self._socket.bind((self.address, 53))
                break
            except OSError as exc:
                if self._fixed_address or exc.errno != errno.EADDRINUSE:
                    raise
                self.address = self._random_address()
                self._write_resolv_conf()
        else:
            raise ServerError("no free 127.0.53.x address for the NXDOMAIN DNS server")
        self._thread.start()

    def stop(self) -> None:
        self._socket.close()
        self._thread.join(5)

    def _serve(self) -> None:
        while True:
            try:
                query, client = self._socket.recvfrom(4096)
            except OSError:
                return
            answer = _nxdomain(query)
            if answer:
                self.queries += 1
                self.names.append(_question_name(query))
                with contextlib.suppress(OSError):
                    self._socket.sendto(answer, client)


def _nxdomain(query: bytes) -> bytes:
    """The NXDOMAIN answer to a DNS query: its id and question, no records ("" if unreadable)."""
    if len(query) < 12 or query[4:6] != b"\x00\x01":
        return b""
    end = 12
    while end < len(query) and query[end] != 0:
        end += 1 + query[end]
    end += 5  # the root label, QTYPE and QCLASS
    if end > len(query):
        return b""
    flags = 0x8000 | 0x0400 | (int.from_bytes(query[2:4], "big") & 0x0100) | 0x0080 | 3
    return query[:2] + flags.to_bytes(2, "big") + b"\x00\x01\x00\x00\x00\x00\x00\x00" + query[12:end]


def _question_name(query: bytes) -> str:
    """The name a DNS query asks about (lower case, no final dot; "" for the root)."""
    labels = []
    at = 12
    while at < len(query) and query[at] != 0:
        labels.append(query[at + 1 : at + 1 + query[at]].decode("ascii", "replace"))
        at += 1 + query[at]
    return ".".join(labels).lower()
