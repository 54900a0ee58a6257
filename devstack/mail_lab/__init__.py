"""A mail lab of real servers (Postfix, Dovecot, rspamd) on loopback: see lab.py."""

from devstack.mail_lab.daemon import MailLabError
from devstack.mail_lab.lab import (
    JUNK,
    LAB_HOST,
    LabPorts,
    MailLab,
    MailLabUnavailable,
    ensure_installed,
    unavailable_reason,
)

__all__ = [
    "JUNK",
    "LAB_HOST",
    "LabPorts",
    "MailLab",
    "MailLabError",
    "MailLabUnavailable",
    "ensure_installed",
    "unavailable_reason",
]
