"""Inbox placement: where a sender's warmup emails were first found by the receivers that engage.

The receivers' inbox sessions record, per email, the folder it was first found in (or `missing` once
given up), and the database counts them per sender and send day in `placement_days` (migration 0016);
this module turns those counts into a sender's rolling score, overall and per receiving
provider family, e.g. "82% inbox over 7 days (google 90%, microsoft 70%)". The family comes from the
receiver's mail servers (its IMAP host, else its SMTP host): what decides placement is the provider
that filters the mail, not the address's domain (a custom domain on Google Workspace is Google).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from warmup.db import Conn
from warmup.models import Placement

# Host name suffixes of the big providers' IMAP/SMTP servers, by family.
_FAMILIES = {
    "google": ("gmail.com", "googlemail.com", "google.com"),
    "microsoft": ("office365.com", "outlook.com", "hotmail.com", "live.com", "microsoft.com"),
}
LAB = "lab"  # loopback or a .test host: the project's own mail lab
OTHER = "other"


def provider_family(host: str) -> str:
    """google, microsoft, lab or other, from a mail server's host name or address."""
    name = host.strip().lower().rstrip(".")
    try:
        if ipaddress.ip_address(name).is_loopback:
            return LAB
    except ValueError:
        pass
    if name == "localhost" or name.endswith((".test", ".localhost")):
        return LAB
    for family, suffixes in _FAMILIES.items():
        if any(name == s or name.endswith("." + s) for s in suffixes):
            return family
    return OTHER


@dataclass
class PlacementScore:
    """A sender's placement over the last `days` days, overall and per receiving provider family."""

    days: int
    overall: Placement = field(default_factory=Placement)
    by_family: dict[str, Placement] = field(default_factory=dict)

    @property
    def inbox_share(self) -> float | None:
        return self.overall.inbox_share

    def text(self) -> str:
        """What a newcomer reads: "82% inbox over 7 days (google 90%, microsoft 70%)"."""
        share = self.overall.inbox_share
        if share is None:
            return f"no placement yet: no engaging receiver has looked for its mail in {self.days} days"
        families = ", ".join(
            f"{name} {p.inbox_share * 100:.0f}%"
            for name, p in sorted(self.by_family.items())
            if p.inbox_share is not None
        )
        return f"{share * 100:.0f}% inbox over {self.days} days ({families}; {self.overall.judged} judged)"


def scores(rows: Iterable[tuple[int, str, str, int]], days: int) -> dict[int, PlacementScore]:
    """(sender id, receiver's mail host, place, count) rows -> each sender's score."""
    out: dict[int, PlacementScore] = {}
    for sender_id, host, place, n in rows:
        score = out.setdefault(sender_id, PlacementScore(days))
        score.overall.add(place, n)
        score.by_family.setdefault(provider_family(host), Placement()).add(place, n)
    return out


def window_start(today: dt.date, days: int) -> dt.date:
    """The first send day of a placement window of `days` days ending with `today`."""
    return today - dt.timedelta(days=days - 1)


_SCORES = "SELECT sender_id, host, place, sum(emails) AS n FROM placement_days"


async def sender_scores(
    conn: Conn, sender_ids: Sequence[int] | None, days: int, today: dt.date | None = None
) -> dict[int, PlacementScore]:
    """The senders' scores over their last `days` send days (today included); None: every sender.
    A sender with nothing judged yet is absent (PlacementScore(days) says so)."""
    since = window_start(today or dt.datetime.now(dt.UTC).date(), days)
    # One statement per case, not `$1 IS NULL OR`: the worker's pool plans once (warmup/db.py), and
    # that plan would read the whole fleet's days for one sender.
    if sender_ids is None:
        rows = await conn.fetch(_SCORES + " WHERE day >= $1 GROUP BY 1, 2, 3", since)
    else:
        rows = await conn.fetch(
            _SCORES + " WHERE sender_id = ANY($1::bigint[]) AND day >= $2 GROUP BY 1, 2, 3",
            list(sender_ids),
            since,
        )
    return scores(((int(r["sender_id"]), r["host"], r["place"], int(r["n"])) for r in rows), days)
