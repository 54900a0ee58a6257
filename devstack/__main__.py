"""`python -m devstack` (what `make dev` runs): the whole stack on loopback with a demo."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from devstack.mail_lab import LabPorts
from devstack.stack import DEFAULT_LAB_PORTS, MAIL_MODES, DevStack, StackOptions
from warmup.process_exit import exit_skipping_teardown


def default_data_dir() -> Path:
    # In a source checkout: <project root>/.data, wherever the command is started from.
    root = Path(__file__).resolve().parents[2]
    return (root if (root / "pyproject.toml").exists() else Path.cwd()) / ".data"


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port from 1 to 65535, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Run PostgreSQL, the Temporal dev server (with Web UI), the mail lab (Postfix, Dovecot, "
        "rspamd; an SMTP sink where it cannot run) and workers on loopback, and enroll five demo mailboxes "
        "that send, read and answer warmup mail. Ctrl-C stops everything; data stays in the data folder.",
        allow_abbrev=False,
    )
    p.add_argument("--data-dir", type=Path, default=default_data_dir(), help="default: .data in the project")
    p.add_argument("--pg-port", type=_port, default=5433, help="PostgreSQL port (default 5433)")
    p.add_argument("--temporal-port", type=_port, default=7233, help="Temporal frontend port (default 7233)")
    p.add_argument("--ui-port", type=_port, default=8233, help="Temporal Web UI port (default 8233)")
    p.add_argument("--api-port", type=_port, default=8000, help="HTTP API and dashboard port (default 8000)")
    p.add_argument("--smtp-port", type=_port, default=2525, help="SMTP sink port (default 2525)")
    p.add_argument(
        "--mail",
        choices=MAIL_MODES,
        default="auto",
        help="auto (default): the mail lab where it can run, else the SMTP sink; lab: fail if it cannot",
    )
    lab = DEFAULT_LAB_PORTS
    p.add_argument(
        "--submission-port", type=_port, default=lab.submission, help=f"lab's Postfix ({lab.submission})"
    )
    p.add_argument("--imap-port", type=_port, default=lab.imap, help=f"lab's IMAP, STARTTLS ({lab.imap})")
    p.add_argument("--imaps-port", type=_port, default=lab.imaps, help=f"lab's IMAP, TLS ({lab.imaps})")
    p.add_argument(
        "--workers", type=_positive_int, help="worker processes (default WARMUP_WORKER_COUNT, else 2)"
    )
    p.add_argument(
        "--exit-after-mails", type=_positive_int, metavar="N", help="stop (exit 0) once N demo mails arrived"
    )
    p.add_argument(
        "--exit-after-replies",
        type=_positive_int,
        metavar="N",
        help="on the mail lab: stop (exit 0) once N answers landed",
    )
    p.add_argument(
        "--timeout", type=float, metavar="SECONDS", help="stop with exit 1 after this long (for CI)"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    opts = StackOptions(
        data_dir=args.data_dir,
        pg_port=args.pg_port,
        temporal_port=args.temporal_port,
        ui_port=args.ui_port,
        api_port=args.api_port,
        smtp_port=args.smtp_port,
        mail=args.mail,
        lab_ports=LabPorts(args.submission_port, args.imap_port, args.imaps_port),
        exit_after_replies=args.exit_after_replies,
        workers=args.workers,
        exit_after_mails=args.exit_after_mails,
        timeout=args.timeout,
    )
    return asyncio.run(DevStack(opts).run())


if __name__ == "__main__":
    exit_skipping_teardown(main())
