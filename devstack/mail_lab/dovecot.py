"""Dovecot's configuration for the lab: IMAP (STARTTLS and IMAPS), LMTP with sieve, SASL for Postfix.

Written from scratch (nothing of /etc/dovecot is read), so the host's own Dovecot setup cannot change the
lab. Password databases live in files of their own (`passdb-*.conf`, included in name order): the lab
writes `passdb-password.conf`; an OAuth2 passdb (issue #11's later part) is one more file beside it plus its
mechanisms in `auth_mechanisms`, see `DovecotConfig.extra_mechanisms`.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

JUNK = "Junk"  # the folder sieve files spam into; SPECIAL-USE \Junk
FOLDERS = {JUNK: r"\Junk", "Sent": r"\Sent", "Drafts": r"\Drafts", "Trash": r"\Trash"}


@dataclass(frozen=True)
class DovecotConfig:
    conf_dir: Path  # dovecot.conf, passdb-*.conf, the users file, sieve/
    run_dir: Path  # Dovecot's base_dir (sockets): short, sun_path is 108 bytes
    state_dir: Path
    mail_dir: Path  # homes: <mail_dir>/<domain>/<local part>/Maildir
    log_file: Path
    cert_file: Path
    key_file: Path
    host: str
    imap_port: int
    imaps_port: int
    mail_uid: int
    mail_gid: int
    extra_mechanisms: tuple[str, ...] = field(default=())  # e.g. ("xoauth2", "oauthbearer")

    @property
    def conf_file(self) -> Path:
        return self.conf_dir / "dovecot.conf"

    @property
    def users_dir(self) -> Path:
        """One passwd-file per mailbox, named by its address. Dovecot re-reads a shared passwd-file at most
        once a second, so a mailbox added just after a login would stay unknown for up to 1 s; a file of
        its own is read on its first lookup."""
        return self.conf_dir / "users"

    def user_file(self, address: str) -> Path:
        return self.users_dir / address

    @property
    def lmtp_socket(self) -> Path:
        return self.run_dir / "lmtp-postfix"

    @property
    def auth_socket(self) -> Path:
        return self.run_dir / "auth-postfix"

    @property
    def sieve_before(self) -> Path:
        return self.conf_dir / "sieve" / "before.sieve"

    def home(self, address: str) -> Path:
        local, domain = address.split("@", 1)
        return self.mail_dir / domain / local


def render(c: DovecotConfig) -> str:
    mechanisms = " ".join(("plain", "login", *c.extra_mechanisms))
    folders = "\n".join(
        f"  mailbox {name} {{\n    special_use = {use}\n    auto = subscribe\n  }}"
        for name, use in FOLDERS.items()
    )
    return f"""# Written by devstack.mail_lab; regenerated on every start.
base_dir = {c.run_dir}
state_dir = {c.state_dir}
log_path = {c.log_file}
protocols = imap lmtp
listen = {c.host}

# No clear-text login, not even on loopback (clients come from 127.0.0.1, see lab.LAB_HOST).
ssl = required
ssl_cert = <{c.cert_file}
ssl_key = <{c.key_file}
ssl_min_protocol = TLSv1.2
disable_plaintext_auth = yes
auth_mechanisms = {mechanisms}
auth_verbose = yes
# Dovecot waits 2 s before answering a wrong password (slows brute force); the lab's tests try many.
auth_failure_delay = 0

default_internal_user = dovecot
default_login_user = dovenull
mail_uid = {c.mail_uid}
mail_gid = {c.mail_gid}
first_valid_uid = {c.mail_uid}
last_valid_uid = {c.mail_uid}
first_valid_gid = {c.mail_gid}
last_valid_gid = {c.mail_gid}
mail_location = maildir:~/Maildir
mail_fsync = never
mail_max_userip_connections = 100

namespace inbox {{
  inbox = yes
  separator = /
{folders}
}}

# Every password database is a file of its own; a later one (OAuth2) is tried after the password one.
!include_try {c.conf_dir}/passdb-*.conf

userdb {{
  driver = passwd-file
  args = username_format=%Lu {c.users_dir}/%Lu
  default_fields = uid={c.mail_uid} gid={c.mail_gid} home={c.mail_dir}/%Ld/%Ln
}}

service imap-login {{
  inet_listener imap {{
    address = {c.host}
    port = {c.imap_port}
  }}
  inet_listener imaps {{
    address = {c.host}
    port = {c.imaps_port}
    ssl = yes
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = 0
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service lmtp {{
  unix_listener {c.lmtp_socket} {{
    mode = 0600
    user = postfix
    group = postfix
  }}
}}
service auth {{
  unix_listener {c.auth_socket} {{
    mode = 0600
    user = postfix
    group = postfix
  }}
}}

protocol lmtp {{
  mail_plugins = $mail_plugins sieve
  postmaster_address = postmaster@localhost
}}
plugin {{
  # Runs before any user script: files what rspamd marked, and the lab's forced-junk senders, into Junk.
  sieve_before = {c.sieve_before}
  sieve = file:~/sieve;active=~/.dovecot.sieve
}}
"""


def render_password_passdb(c: DovecotConfig) -> str:
    # With OAuth2 on, a token never meets the password file (nor a password the token endpoint).
    only = "  mechanisms = plain login\n" if c.extra_mechanisms else ""
    return f"""passdb {{
  driver = passwd-file
  args = scheme=SSHA512 username_format=%Lu {c.users_dir}/%Lu
{only}}}
"""


def render_oauth2_passdb(c: DovecotConfig) -> str:
    """The OAuth2 passdb: XOAUTH2 and OAUTHBEARER logins, each token checked by RFC 7662 introspection."""
    return f"""passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {c.conf_dir}/dovecot-oauth2.conf.ext
}}
"""


def render_oauth2_backend(introspection_url: str) -> str:
    # POST token=... to the endpoint; the answer must say active=true and name the login user as `email`.
    return f"""introspection_mode = post
introspection_url = {introspection_url}
username_attribute = email
active_attribute = active
active_value = true
timeout_msecs = 5000
"""


def users_line(address: str, password: str) -> str:
    """A passwd-file line: the address, a salted SHA-512 of the password, and the empty userdb fields
    (uid, gid, home come from the userdb's default_fields)."""
    salt = secrets.token_bytes(16)
    digest = hashlib.sha512(password.encode() + salt).digest()
    hashed = base64.b64encode(digest + salt).decode()
    return f"{address}:{{SSHA512}}{hashed}::::::\n"


def sieve_script(junk_senders: frozenset[str]) -> str:
    lines = [
        'require ["fileinto", "envelope"];',
        "# rspamd's milter adds `X-Spam: Yes` when its verdict is `add header`.",
        'if header :is "X-Spam" "Yes" {',
        f'  fileinto "{JUNK}";',
        "  stop;",
        "}",
    ]
    if junk_senders:
        quoted = ", ".join(_sieve_string(a) for a in sorted(junk_senders))
        lines += [
            "# Lab only (MailLab.force_junk_from): these senders' mail goes to Junk, whatever rspamd says.",
            f'if anyof (envelope :all :is "from" [{quoted}], address :all :is "from" [{quoted}]) {{',
            f'  fileinto "{JUNK}";',
            "  stop;",
            "}",
        ]
    return "\n".join(lines) + "\n"


def _sieve_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_private(path: Path, text: str, *, group: int) -> None:
    """Replace `path` atomically, mode 0640, readable by Dovecot's auth process (group dovecot)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o640)
    os.chown(tmp, 0, group)
    tmp.replace(path)
