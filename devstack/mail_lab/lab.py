"""The mail lab: real Postfix, Dovecot and rspamd on 127.0.0.1 high ports, in one folder, for the tests and
`make dev`.

    lab = MailLab(tmp_path / "mail")
    lab.start()                      # about 10 s, mostly rspamd loading its rules
    lab.add_mailbox("ana@lab.test", "pw")
    ... submit to lab.host:lab.submission_port (STARTTLS + AUTH), read over IMAP at lab.imap_port
    lab.stop()                       # every process it started is gone when this returns

Mail path: submission (STARTTLS required, SASL by Dovecot) -> rspamd milter (its verdict as `X-Spam: Yes`)
-> Postfix -> LMTP -> Dovecot, whose sieve_before files spam and the forced-junk senders into Junk.
Clients trust `ca_file` (or SSL_CERT_FILE=ca_file in a subprocess's environment, see `client_env`).
Needs root (Postfix's master, Dovecot's privilege separation) and Debian's packages, which `start` installs
when missing; when it cannot, it raises MailLabUnavailable, which callers turn into a skip or a fallback.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import re
import shutil
import smtplib
import ssl
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType

from devstack.debian import DebianInstallError, can_install, ensure_commands
from devstack.mail_lab import dovecot, maildir, postfix, rspamd
from devstack.mail_lab.certs import make_certificates
from devstack.mail_lab.daemon import Daemon, MailLabError, port_open
from devstack.postgres import free_port

# command -> the Debian package that ships it (dovecot's helpers live in /usr/lib/dovecot).
PACKAGES = {
    "postfix": "postfix",
    "dovecot": "dovecot-imapd",
    "lmtp": "dovecot-lmtpd",
    "sievec": "dovecot-sieve",
    "managesieve": "dovecot-managesieved",
    "rspamd": "rspamd",
}
MAIL_USER = "warmup-mail"  # owns every lab Maildir
JUNK = dovecot.JUNK
_ADDRESS = re.compile(r"^[a-z0-9._-]+@[a-z0-9-]+(\.[a-z0-9-]+)*$")
_MAIL_DIR = "mail"  # the Maildirs, under base_dir
_MAX_SOCKET_DIR = 60  # leaves room under sun_path's 108 bytes for Dovecot's login/ sockets


class MailLabUnavailable(MailLabError):
    """The lab cannot run on this machine (no root, not Debian, packages not installable): why, in words."""


def ensure_installed() -> None:
    """Install the lab's Debian packages if missing; MailLabUnavailable saying why when impossible."""
    if os.geteuid() != 0:
        raise MailLabUnavailable("the mail lab needs root (Postfix's master and Dovecot run as root)")
    try:
        ensure_commands(PACKAGES)
    except DebianInstallError as exc:
        raise MailLabUnavailable(f"the mail lab's Debian packages are missing: {exc}") from exc
    if not postfix.MASTER.exists():
        raise MailLabUnavailable(f"postfix is installed but {postfix.MASTER} is missing")


def unavailable_reason() -> str | None:
    """None when the lab can run here (installed or installable), else why not; installs nothing."""
    if os.geteuid() != 0:
        return "the mail lab needs root (Postfix's master and Dovecot run as root)"
    if all(shutil.which(c) or Path("/usr/lib/dovecot", c).exists() for c in PACKAGES):
        return None
    return can_install()


# Where clients reach the lab. Not 127.0.0.1: Dovecot counts a connection whose source address equals its
# destination as secured and then takes a clear-text password even with ssl = required. A client on this
# machine connecting to 127.0.0.2 comes from 127.0.0.1, so Dovecot refuses clear text like a provider does.
LAB_HOST = "127.0.0.2"


@dataclass(frozen=True)
class LabPorts:
    submission: int  # STARTTLS required, then AUTH
    imap: int  # STARTTLS
    imaps: int  # implicit TLS


class MailLab:
    def __init__(
        self,
        base_dir: Path,
        *,
        host: str = LAB_HOST,
        die_with_parent: bool = True,
        ports: LabPorts | None = None,
        keep_mail: bool = False,
        oauth2_introspection_url: str | None = None,
    ) -> None:
        """`ports`: fixed client ports (`make dev` prints them), else free ones; `keep_mail`: the Maildirs
        survive a restart (`make dev` continues on its data), else every start begins empty (tests);
        `oauth2_introspection_url`: Dovecot (IMAP, and SMTP through Postfix's SASL) also takes XOAUTH2 and
        OAUTHBEARER logins, validating each token at this RFC 7662 endpoint (passwords keep working)."""
        self.oauth2_introspection_url = oauth2_introspection_url
        self.base_dir = Path(base_dir).absolute()
        self.host = host
        self.die_with_parent = die_with_parent
        self.keep_mail = keep_mail
        self.submission_port = ports.submission if ports else free_port(host)
        self.imap_port = ports.imap if ports else free_port(host)  # STARTTLS
        self.imaps_port = ports.imaps if ports else free_port(host)  # implicit TLS
        self.milter_port = free_port()  # rspamd, for Postfix only
        self.start_seconds: float | None = None
        self.stop_seconds: float | None = None
        self._mailboxes: dict[str, str] = {}  # address -> passwd-file line (hashed)
        self._junk_senders: frozenset[str] = frozenset()
        self._lock = threading.Lock()
        self._daemons: list[Daemon] = []
        self._short_dir: Path | None = None
        self._dovecot: dovecot.DovecotConfig | None = None

    # --- what clients need -------------------------------------------------------------------

    @property
    def ca_file(self) -> Path:
        """PEM of the lab CA that signed every daemon's certificate (SAN localhost, 127.0.0.1, `host`)."""
        return self.base_dir / "tls" / "ca.pem"

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that verifies the lab's certificates, host name included."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def client_env(self) -> dict[str, str]:
        """Environment for a subprocess (a worker) that must trust the lab's TLS through OpenSSL's defaults.
        SSL_CERT_FILE replaces the system's trust store for that process, it does not add to it."""
        return {"SSL_CERT_FILE": str(self.ca_file)}

    @property
    def pids(self) -> list[int]:
        """The daemons' main processes (for a pid registry such as `make dev`'s)."""
        return [d.pid for d in self._daemons if d.pid is not None]

    @property
    def running(self) -> bool:
        return bool(self._daemons) and all(d.running for d in self._daemons)

    @property
    def log_files(self) -> list[Path]:
        return [log for d in self._daemons for log in d.logs]

    # --- lifecycle -----------------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> None:
        """Write the configuration, start the three daemons and return once mail flows end to end."""
        if self._daemons:
            return
        began = time.monotonic()
        ensure_installed()
        try:
            self._start(began + timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - began

    def stop(self, timeout: float = 15.0) -> None:
        """Stop every daemon and every process it forked; safe to call twice or after a failed start."""
        began = time.monotonic()
        # Postfix first, so nothing new reaches the milter or LMTP while they go away.
        for daemon in reversed(self._daemons):
            daemon.stop(timeout)
        self._daemons = []
        if self._short_dir is not None:
            shutil.rmtree(self._short_dir, ignore_errors=True)
            self._short_dir = None
        self.stop_seconds = time.monotonic() - began

    def __enter__(self) -> MailLab:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- mailboxes -----------------------------------------------------------------------------

    def add_mailbox(self, address: str, password: str) -> None:
        """Create (or re-password) a lab mailbox while the lab runs: Dovecot re-reads its users file by
        its file on the first lookup (Postfix hands every lab address to Dovecot), so it is usable at once."""
        address = address.strip().lower()
        if not _ADDRESS.match(address):
            raise ValueError(f"add_mailbox: {address!r} is not an address like name@lab.test")
        if not password or "\n" in password:
            raise ValueError("add_mailbox: the password must be non-empty and on one line")
        with self._lock:
            self._mailboxes[address] = dovecot.users_line(address, password)
            if self._dovecot is not None:
                self._write_user(address)

    @property
    def mailboxes(self) -> list[str]:
        return sorted(self._mailboxes)

    def force_junk_from(self, senders: Iterable[str]) -> None:
        """Lab only: file every message from these senders (envelope or From:) into Junk, whatever rspamd
        says; replaces the previous set (empty: none). The sieve rule is recompiled, no restart."""
        wanted = frozenset(s.strip().lower() for s in senders)
        for sender in wanted:
            if not _ADDRESS.match(sender):
                raise ValueError(f"force_junk_from: {sender!r} is not an address")
        with self._lock:
            self._junk_senders = wanted
            if self._dovecot is not None:
                self._write_sieve()

    # --- reading mailboxes (assertions) --------------------------------------------------------

    def folders(self, address: str) -> list[str]:
        return maildir.folders(self.home(address))

    def messages(self, address: str, folder: str = "INBOX") -> list[EmailMessage]:
        """The messages in one folder of a lab mailbox, read from disk (not over IMAP)."""
        return maildir.messages(self.home(address), folder)

    def locate(self, address: str, message_id: str) -> list[str]:
        """The folders of `address` that hold the message with this Message-ID."""
        return maildir.locate(self.home(address), message_id)

    def wait_for(self, address: str, message_id: str, timeout: float = 20.0) -> str:
        """The folder the message was delivered to, once it is there (MailLabError after `timeout`)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.locate(address, message_id)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise MailLabError(
                    f"{message_id} did not reach {address} within {timeout} s; see {self.base_dir}/*/*.log"
                )
            time.sleep(0.05)

    # --- internals -----------------------------------------------------------------------------

    def home(self, address: str) -> Path:
        """The mailbox's home folder (its Maildir is home/Maildir), for reading it from disk."""
        if self._dovecot is None:
            raise MailLabError("the mail lab is not started")
        return self._dovecot.home(address.strip().lower())

    def _start(self, deadline: float) -> None:
        base = self.base_dir
        if base.exists():
            # A previous run's queue, configuration or Maildirs would change what tests see.
            for entry in base.iterdir():
                if self.keep_mail and entry.name == _MAIL_DIR:
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
        base.mkdir(parents=True, exist_ok=True)
        base.chmod(0o755)
        _allow_traversal(base)
        short = base / "run"
        if len(str(short)) > _MAX_SOCKET_DIR:
            self._short_dir = short = Path(tempfile.mkdtemp(prefix="warmup-mail-"))
        else:
            short.mkdir()
        short.chmod(0o755)
        mail_uid, mail_gid = _mail_user()
        certs = make_certificates(base / "tls", ips=("127.0.0.1", self.host))

        rspamd_user = pwd.getpwnam("_rspamd")
        rs = rspamd.RspamdConfig(
            conf_dir=base / "rspamd",
            db_dir=short / "rspamd-db",  # holds its control socket: short path
            run_dir=short / "rspamd-run",
            log_dir=base / "rspamd" / "log",
            milter_port=self.milter_port,
        )
        for rel, text in rspamd.files(rs).items():
            path = rs.conf_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        for d in (rs.db_dir, rs.run_dir, rs.log_dir):
            d.mkdir(parents=True, exist_ok=True)
            os.chown(d, rspamd_user.pw_uid, rspamd_user.pw_gid)
        rspamd_daemon = Daemon("rspamd", rs.command(), rs.conf_dir / "stdout.log", [rs.log_file])
        # Started first: loading its rules is most of the lab's start time.
        rspamd_daemon.start(
            die_with_parent=self.die_with_parent,
            privileges=[f"--reuid={rspamd_user.pw_uid}", f"--regid={rspamd_user.pw_gid}", "--init-groups"],
        )
        self._daemons.append(rspamd_daemon)

        dc = dovecot.DovecotConfig(
            conf_dir=base / "dovecot",
            run_dir=short / "dovecot",
            state_dir=base / "dovecot" / "state",
            mail_dir=base / _MAIL_DIR,
            log_file=base / "dovecot" / "dovecot.log",
            cert_file=certs.cert_file,
            key_file=certs.key_file,
            host=self.host,
            imap_port=self.imap_port,
            imaps_port=self.imaps_port,
            mail_uid=mail_uid,
            mail_gid=mail_gid,
            extra_mechanisms=("xoauth2", "oauthbearer") if self.oauth2_introspection_url else (),
        )
        for d in (dc.conf_dir, dc.state_dir, dc.sieve_before.parent):
            d.mkdir(parents=True, exist_ok=True)
        dc.mail_dir.mkdir(exist_ok=True)
        os.chown(dc.mail_dir, mail_uid, mail_gid)
        dc.mail_dir.chmod(0o750)
        dc.conf_file.write_text(dovecot.render(dc))
        (dc.conf_dir / "passdb-password.conf").write_text(dovecot.render_password_passdb(dc))
        if self.oauth2_introspection_url:
            (dc.conf_dir / "passdb-oauth2.conf").write_text(dovecot.render_oauth2_passdb(dc))
            dovecot.write_private(
                dc.conf_dir / "dovecot-oauth2.conf.ext",
                dovecot.render_oauth2_backend(self.oauth2_introspection_url),
                group=grp.getgrnam("dovecot").gr_gid,
            )
        self._dovecot = dc
        dc.users_dir.mkdir(mode=0o750)
        os.chown(dc.users_dir, 0, grp.getgrnam("dovecot").gr_gid)
        for address in self._mailboxes:
            self._write_user(address)
        self._write_sieve()
        dovecot_daemon = Daemon(
            "dovecot", ["dovecot", "-F", "-c", str(dc.conf_file)], dc.conf_dir / "stdout.log", [dc.log_file]
        )
        dovecot_daemon.start(die_with_parent=self.die_with_parent)
        self._daemons.append(dovecot_daemon)

        pc = postfix.PostfixConfig(
            conf_dir=base / "postfix",
            log_file=base / "postfix" / "postfix.log",
            cert_file=certs.cert_file,
            key_file=certs.key_file,
            host=self.host,
            submission_port=self.submission_port,
            milter_port=self.milter_port,
            lmtp_socket=dc.lmtp_socket,
            auth_socket=dc.auth_socket,
        )
        pc.conf_dir.mkdir()
        pc.queue_dir.mkdir()  # `postfix check` fills it in, but needs it to exist
        (pc.conf_dir / "main.cf").write_text(postfix.render_main(pc))
        (pc.conf_dir / "master.cf").write_text(postfix.render_master(pc))
        # `postfix check` creates the queue and data folders with their owners and modes.
        check = subprocess.run(
            ["postfix", "-c", str(pc.conf_dir), "check"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check.returncode != 0:
            # Postfix prints its errors only to a terminal, and otherwise to its log.
            raise Daemon("postfix", [], pc.log_file).failure("`postfix check` failed")
        postfix_daemon = Daemon(
            "postfix",
            [str(postfix.MASTER), "-c", str(pc.conf_dir)],
            pc.conf_dir / "stdout.log",
            [pc.log_file],
        )
        postfix_daemon.start(die_with_parent=self.die_with_parent)
        self._daemons.append(postfix_daemon)

        dovecot_daemon.wait_until(
            lambda: (
                port_open(self.imap_port, self.host)
                and port_open(self.imaps_port, self.host)
                and dc.lmtp_socket.exists()
                and dc.auth_socket.exists()
            ),
            "listening",
            deadline,
        )
        # rspamd binds its milter port once its rules are loaded; until then Postfix answers 451.
        rspamd_daemon.wait_until(lambda: port_open(self.milter_port), "listening", deadline)
        postfix_daemon.wait_until(
            lambda: _smtp_ready(self.host, self.submission_port), "answering EHLO", deadline
        )

    def _write_user(self, address: str) -> None:
        assert self._dovecot is not None
        dovecot.write_private(
            self._dovecot.user_file(address), self._mailboxes[address], group=grp.getgrnam("dovecot").gr_gid
        )

    def _write_sieve(self) -> None:
        dc = self._dovecot
        assert dc is not None
        script = dc.sieve_before
        tmp = script.with_name(script.name + ".tmp")
        tmp.write_text(dovecot.sieve_script(self._junk_senders))
        tmp.chmod(0o644)
        tmp.replace(script)
        # Compiled now, as root, because LMTP (the mail user) cannot write the binary next to the script.
        result = subprocess.run(
            ["sievec", "-c", str(dc.conf_file), str(script)],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise MailLabError(f"sievec failed on {script}:\n{result.stdout}{result.stderr}")
        binary = script.with_suffix(".svbin")
        binary.chmod(0o644)


def _smtp_ready(host: str, port: int) -> bool:
    """EHLO answered 250: smtpd runs and reached the milter (a milter that cannot be reached makes
    smtpd answer 451 here, with milter_default_action = tempfail)."""
    try:
        with smtplib.SMTP(host, port, timeout=5) as smtp:
            code, _ = smtp.ehlo("probe.lab.localhost")
            return code == 250
    except (OSError, smtplib.SMTPException):
        return False


def _mail_user() -> tuple[int, int]:
    """The OS user owning the lab's Maildirs, created on first use (like PostgreSQL's)."""
    try:
        user = pwd.getpwnam(MAIL_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", MAIL_USER],
            check=False,
            capture_output=True,
        )
        user = pwd.getpwnam(MAIL_USER)  # another process may have created it meanwhile: fine
    return user.pw_uid, user.pw_gid


def _allow_traversal(path: Path) -> None:
    """Let the daemons' users (dovecot, postfix, _rspamd, the mail user) walk down to the lab folder."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            with contextlib.suppress(PermissionError):
                parent.chmod(mode | stat.S_IXOTH)
