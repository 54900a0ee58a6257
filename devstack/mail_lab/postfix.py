"""Postfix's configuration for the lab: one submission port (STARTTLS required, SASL through Dovecot),
rspamd as milter, lab domains delivered to Dovecot over LMTP, and nothing relayed anywhere else.

A private instance: its own config, queue and data folders; `master -c DIR` runs in the foreground (no
postmulti, no chroot), so the lab starts, reloads and stops it by its pid.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MASTER = Path("/usr/lib/postfix/sbin/master")
NO_RELAY = "error:5.7.1 the mail lab delivers only to its own mailboxes"


@dataclass(frozen=True)
class PostfixConfig:
    conf_dir: Path  # main.cf, master.cf, the recipient maps
    log_file: Path
    cert_file: Path
    key_file: Path
    host: str
    submission_port: int
    milter_port: int
    lmtp_socket: Path
    auth_socket: Path

    @property
    def queue_dir(self) -> Path:
        return self.conf_dir / "queue"

    @property
    def data_dir(self) -> Path:
        return self.conf_dir / "data"


def render_main(c: PostfixConfig) -> str:
    return f"""# Written by devstack.mail_lab; regenerated on every start.
compatibility_level = 3.6
config_directory = {c.conf_dir}
queue_directory = {c.queue_dir}
data_directory = {c.data_dir}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {c.log_file}
maillog_file_prefixes = {c.log_file.parent}
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = mail.lab.localhost
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
biff = no
smtpd_banner = $myhostname ESMTP warmup mail lab

# Every domain is the lab's: all mail goes to Dovecot over LMTP, which alone knows the mailboxes (it refuses
# an unknown one, and Postfix bounces to the sender). So no map to reload when a mailbox is added, and no
# route off the machine exists at all; the error transports below are a second guard.
virtual_mailbox_domains = static:all
virtual_mailbox_maps = static:all
virtual_transport = lmtp:unix:{c.lmtp_socket}
local_transport = error:5.1.1 no local delivery in the mail lab
default_transport = {NO_RELAY}
relay_transport = {NO_RELAY}
relay_domains =
mynetworks = 127.0.0.1/32
# A client that has not logged in (AUTH, after STARTTLS) is refused at RCPT.
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject

smtpd_tls_cert_file = {c.cert_file}
smtpd_tls_key_file = {c.key_file}
smtpd_tls_security_level = encrypt
smtpd_tls_auth_only = yes
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {c.auth_socket}

# rspamd scores every message; while it is not answering (still loading), mail is refused with 451.
smtpd_milters = inet:127.0.0.1:{c.milter_port}
non_smtpd_milters = $smtpd_milters
milter_default_action = tempfail
milter_protocol = 6
milter_mail_macros = i {{mail_addr}} {{client_addr}} {{client_name}} {{auth_authen}}

# A lab retries a failed delivery (Dovecot restarting) within seconds, not minutes.
queue_run_delay = 5s
minimal_backoff_time = 5s
maximal_backoff_time = 30s
"""


def render_master(c: PostfixConfig) -> str:
    # Debian's stock services, unchrooted, minus pickup/smtp/local (no sendmail, nothing leaves, no local).
    return f"""# Written by devstack.mail_lab.
{c.host}:{c.submission_port} inet n - n - - smtpd
  -o syslog_name=postfix/submission
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""
