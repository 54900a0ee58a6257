"""Picks who receives a warmup email: another active mailbox, chosen by the pool rules (issue #15 item 3).

The rules, most important first (a pick relaxes them from the bottom up, see below):

1. `same_user`: never a mailbox of the sender's own user (a user's mail should come from outside).
2. `same_domain`: never a mailbox of the sender's email domain (the part after `@`, lowercased).
3. `family_mix`: not the provider family of this sender's previous pick today, so no provider sees a
   sender's mail back to back and no family gets more than about half of a sender's day. Families
   (`family_of`): gmail/googlemail -> google; outlook/hotmail/live/msn -> microsoft; yahoo/ymail ->
   yahoo (each with any country suffix: yahoo.co.uk, hotmail.fr); every other domain is its own family.
4. `inbound_cap`: a receiver gets at most `inbound_cap(...)` warmup emails on a day, near its own
   volume: `max(INBOUND_CAP_FLOOR, ceil(INBOUND_CAP_SLACK * volume))` where volume is the receiver's own
   ramp quota for the day, estimated from its settings and what it sent the day before (yesterday's
   sends + its daily increment, within [ramp_start, ramp_ceiling]). The slack (1.5) matters: the pool's
   inbound equals its outbound, so caps at exactly 1.0 would leave the day's last sends no receiver with
   room. "A day" is the sender's local day (the ledger's `day`), a receiver in another time zone is
   counted on the senders' days.
5. `pair_repeat`: not a receiver this sender mailed in the last `PAIR_REPEAT_DAYS` days (today included).

Relaxation: when no receiver keeps every rule, the pick takes the receiver that keeps the most important
ones, lexicographically: it breaks `pair_repeat` first, then `inbound_cap`, then `family_mix`, then
`same_domain`, and `same_user` last (a one-user install still sends). Within a broken rule it prefers the
smaller breach (fewest repeats today, then in the window; the least over-cap receiver). `Recipient.relaxed`
names the rules the pick breaks, in that order, comma-separated ("" when none).

Cost at 100,000 mailboxes, one statement per pick: each mailbox has a nearly dense `pick_slot`
(migrations 0010 and 0018: a sequence, with a gap only where an insert rolled back); the statement
draws `PROBES` uniform slots in [0, max slot] and looks each up on the partial index of active
mailboxes, with the receiver's counts from `send_ledger` by index. The first probe that keeps every rule
wins: rejection sampling, so the pick is uniform over the eligible receivers whatever the gaps
in ids or slots (a probe on a paused, removed or ineligible mailbox is only a wasted probe). Only when
every probe misses, a second statement reads `SCAN` active mailboxes in slot order from a random slot
and takes the best of them, uniformly among equals. A pool of at most `SCAN` mailboxes is read whole, so
relaxation there is exact; in a large pool the second statement runs only when eligible receivers are so
rare that `PROBES` draws all missed. No `ORDER BY random()`, no scan of the pool.

Retries: every random number derives from the idempotency key, so a retry of a send picks the same
receiver while the pool has not changed (once the ledger row exists, the send path reuses its receiver).

Receivers that engage come first: among the receivers that keep every rule, the pick takes one that
engages (IMAP settings, so inbox sessions read, rescue and answer what it gets) when a probe found one;
only when none did, one that does not. A preference, not a rule: it costs no extra statement and never
makes a pick break a rule, so a pool where no one engages picks exactly as without it. In the fallback
it is the last tie-breaker.

Not yet: provider families from the receivers' mail servers (a custom domain on Google Workspace counts as
its own family here).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import asyncpg

from warmup import mailbox_settings as ms
from warmup.db import Conn
from warmup.models import SendStatus

PAIR_REPEAT_DAYS = 7  # default window of the pair rule, in days, today included
INBOUND_CAP_FLOOR = 2  # a receiver may always get this many a day, even one that sends nothing
INBOUND_CAP_SLACK = 1.5  # the cap over the receiver's own estimated volume
PROBES = 8  # uniform draws per pick; at half the pool eligible, all 8 miss once in 256 picks
SCAN = 256  # rows the fallback reads; a pool this small is read whole


class Rule(StrEnum):
    """The pool rules in relaxation order: the first one gives way first."""

    PAIR_REPEAT = "pair_repeat"
    INBOUND_CAP = "inbound_cap"
    FAMILY_MIX = "family_mix"
    SAME_DOMAIN = "same_domain"
    SAME_USER = "same_user"


RELAXATION_ORDER: tuple[Rule, ...] = tuple(Rule)


@dataclass(frozen=True)
class Recipient:
    id: int
    address: str
    relaxed: str = ""  # the rules this pick breaks, in RELAXATION_ORDER, comma-separated; "" = none


# --- pure rules ---------------------------------------------------------------------------------

_PROVIDERS = {
    "gmail": "google",
    "googlemail": "google",
    "outlook": "microsoft",
    "hotmail": "microsoft",
    "live": "microsoft",
    "msn": "microsoft",
    "yahoo": "yahoo",
    "ymail": "yahoo",
}


def domain_of(address: str) -> str:
    """The email domain, lowercased (the part after the last `@`)."""
    return address.rsplit("@", 1)[-1].strip().lower()


def _country_suffix(labels: Sequence[str]) -> bool:
    """com, fr, co.uk, com.br: one or two short labels, what a provider's national domains end with."""
    return 1 <= len(labels) <= 2 and all(1 < len(label) <= 3 and label.isalpha() for label in labels)


def family_of(domain: str) -> str:
    """The provider family of an email domain: google, microsoft, yahoo, or the domain itself."""
    labels = domain.strip().lower().rstrip(".").split(".")
    provider = _PROVIDERS.get(labels[0])
    if provider is not None and _country_suffix(labels[1:]):
        return provider
    return ".".join(labels)


def estimated_volume(ramp_start: int, ramp_increment: int, ramp_ceiling: int, sent_yesterday: int) -> int:
    """A mailbox's own quota today, from its ramp and yesterday's sends (the workflow's ramp day is
    not in the database): one step up from yesterday, never below the ramp's start or above its ceiling."""
    return max(ramp_start, min(ramp_ceiling, sent_yesterday + ramp_increment))


def inbound_cap(ramp_start: int, ramp_increment: int, ramp_ceiling: int, sent_yesterday: int) -> int:
    """The most warmup emails a receiver should get on a day (rule 4 of the module docstring)."""
    volume = estimated_volume(ramp_start, ramp_increment, ramp_ceiling, sent_yesterday)
    return max(INBOUND_CAP_FLOOR, math.ceil(INBOUND_CAP_SLACK * volume))


@dataclass(frozen=True)
class Sender:
    """What the rules need of the sender."""

    user_id: str
    domain: str
    last_family: str | None  # the family of its previous pick today; None before its first send


@dataclass(frozen=True)
class Candidate:
    """One receiver the pick may choose, with its counts."""

    id: int
    address: str
    user_id: str
    inbound_today: int  # warmup emails it got today (senders' local day), FAILED ones aside
    cap: int  # inbound_cap(...) of this receiver
    pair_today: int  # emails this sender sent it today
    pair_window: int  # ... in the last PAIR_REPEAT_DAYS days, today included
    engages: bool = True  # it runs inbox sessions (IMAP settings): preferred among the eligible


def breaches(sender: Sender, c: Candidate) -> dict[Rule, int]:
    """How much `c` breaks each rule for `sender`: 0 = kept, larger = a worse breach of that rule."""
    return {
        Rule.PAIR_REPEAT: c.pair_window,
        Rule.INBOUND_CAP: max(0, c.inbound_today + 1 - c.cap),
        Rule.FAMILY_MIX: int(family_of(domain_of(c.address)) == sender.last_family),
        Rule.SAME_DOMAIN: int(domain_of(c.address) == sender.domain),
        Rule.SAME_USER: int(c.user_id == sender.user_id),
    }


def preference(sender: Sender, c: Candidate) -> tuple[int, ...]:
    """A sort key, smaller is better: the breaches from the most important rule down; a pair repeated
    today weighs before one repeated earlier in the window (the old "new to this sender today")."""
    found = breaches(sender, c)
    ranked = [found[rule] for rule in reversed(RELAXATION_ORDER)]
    return (*ranked[:-1], c.pair_today, ranked[-1], int(not c.engages))


def relaxed_rules(sender: Sender, c: Candidate) -> str:
    """The rules `c` breaks, in relaxation order, comma-separated; "" when it keeps them all."""
    found = breaches(sender, c)
    return ",".join(rule.value for rule in RELAXATION_ORDER if found[rule])


def first_eligible(sender: Sender, candidates: Sequence[Candidate]) -> Candidate | None:
    """The first candidate that keeps every rule and engages, else the first that keeps every rule (the
    rejection-sampling pick), or None."""
    eligible = [c for c in candidates if not relaxed_rules(sender, c)]
    return next((c for c in eligible if c.engages), eligible[0] if eligible else None)


def best_of(sender: Sender, candidates: Sequence[Candidate], key: str) -> Candidate | None:
    """A candidate with the best `preference`, chosen by `key` uniformly among equals; None if empty."""
    if not candidates:
        return None
    best = min(preference(sender, c) for c in candidates)
    tied = [c for c in candidates if preference(sender, c) == best]
    return tied[start_point(key, 0, len(tied) - 1)]


# --- randomness from the key --------------------------------------------------------------------


def start_point(idempotency_key: str, low: int, high: int) -> int:
    """A pseudo-random integer in [low, high], the same for the same key."""
    digest = hashlib.sha256(b"recipient:" + idempotency_key.encode("utf-8")).digest()
    return low + int.from_bytes(digest[:8], "big") % (high - low + 1)


def key_draws(idempotency_key: str, count: int) -> list[int]:
    """`count` pseudo-random 64-bit numbers, the same for the same key."""
    out: list[int] = []
    block = 0
    while len(out) < count:
        digest = hashlib.sha256(f"recipient:{block}:{idempotency_key}".encode()).digest()
        out.extend(int.from_bytes(digest[i : i + 8], "big") for i in range(0, 32, 8))
        block += 1
    return out[:count]


def unit(draw: int) -> float:
    """A 64-bit draw as a float in [0, 1), from its top 53 bits (exact in a double)."""
    return (draw >> 11) / float(1 << 53)


# --- SQL ----------------------------------------------------------------------------------------

_FAILED = SendStatus.FAILED.value  # never reached its receiver: counts for no rule
# Who may receive: active, and not out of the pool for a refused address (activities/recipient_refusals.py).
_RECEIVES = "m.state = 'active' AND m.receiving_off = ''"

# A candidate's columns: $1 = sender id, $2 = day. Each count is one index range (migration 0010 for
# inbound, send_ledger_sender_day for yesterday's sends), bounded by a day's email, not the pool.
_CANDIDATE_COLUMNS = f"""
    m.id, m.address, m.user_id, m.ramp_start, m.ramp_increment, m.ramp_ceiling,
    (SELECT count(*) FROM send_ledger r
     WHERE r.recipient_id = m.id AND r.day = $2 AND r.status <> '{_FAILED}') AS inbound_today,
    (SELECT count(*) FROM send_ledger y
     WHERE y.sender_id = m.id AND y.day = $2 - 1 AND y.status <> '{_FAILED}') AS sent_yesterday,
    (m.{ms.IMAP_HOST.db_column} <> '' AND m.{ms.ENGAGEMENT_ON.db_column}) AS engages
"""

# One statement: the sender, its sends in the pair window (at most a few hundred rows, by index), its
# previous pick today, and PROBES uniform slots looked up on the active index ($3 = key, $4 = the
# draws in [0, 1), $5 = the pair window in days). The sender row comes back even when no probe hits.
_PROBE = f"""
WITH top AS (SELECT max(pick_slot) AS slot FROM mailboxes),
probe AS (
    SELECT t.ord, floor(t.u * (top.slot + 1))::bigint AS slot
    FROM unnest($4::float8[]) WITH ORDINALITY AS t(u, ord), top
),
-- One unique-index lookup per probe (lateral), materialized so the candidates' counts below run for
-- the hits alone. Written as a plain join, a planner with stale statistics (a pool just enrolled by
-- COPY) read every active mailbox and computed each one's counts before matching the slots: 3 ms of
-- PostgreSQL CPU a pick at 1,000 mailboxes, a scan of the whole pool at 100,000.
hit AS MATERIALIZED (
    SELECT probe.ord, h.id FROM probe
    CROSS JOIN LATERAL (
        SELECT m.id FROM mailboxes m WHERE m.pick_slot = probe.slot AND {_RECEIVES} AND m.id <> $1
        LIMIT 1  -- the slot is unique; the limit keeps the planner from flattening this into a join
    ) h
)
SELECT s.user_id AS sender_user, s.address AS sender_address,
    -- The newest of the sender's rows today, by aggregating them (a day's sends), not ORDER BY id LIMIT 1:
    -- planned while the day's partition was empty (a worker plans once per connection), that walked the
    -- partition's primary key back from its newest row to the sender's, every row of the day at worst.
    (SELECT lm.address FROM mailboxes lm WHERE lm.id = (
        SELECT (array_agg(l.recipient_id ORDER BY l.id DESC))[1] FROM send_ledger l
        WHERE l.sender_id = $1 AND l.day = $2 AND l.idempotency_key <> $3)) AS last_address,
    ARRAY(SELECT p.recipient_id FROM send_ledger p
          WHERE p.sender_id = $1 AND p.day > $2 - $5::int AND p.day <= $2 AND p.status <> '{_FAILED}'
    ) AS recent_ids,
    ARRAY(SELECT p.recipient_id FROM send_ledger p
          WHERE p.sender_id = $1 AND p.day = $2 AND p.status <> '{_FAILED}'
    ) AS today_ids,
    c.*
FROM mailboxes s
LEFT JOIN LATERAL (
    SELECT hit.ord, {_CANDIDATE_COLUMNS}
    FROM hit JOIN mailboxes m ON m.id = hit.id
) c ON true
WHERE s.id = $1
ORDER BY c.ord
"""

# A scalar subquery, not a CTE joined in: as an InitPlan its value bounds the index scan (joined, it
# became a filter over half the index).
_START = "SELECT floor($3::float8 * (max(pick_slot) + 1))::bigint FROM mailboxes"
# The fallback: SCAN active mailboxes in slot order from a random slot ($3 in [0, 1)), wrapping round.
_SCAN = f"""
WITH slice AS (
    SELECT id, lap, pick_slot FROM (
        (SELECT m.id, 0 AS lap, m.pick_slot FROM mailboxes m
         WHERE {_RECEIVES} AND m.pick_slot >= ({_START}) AND m.id <> $1
         ORDER BY m.pick_slot LIMIT $4)
        UNION ALL
        (SELECT m.id, 1 AS lap, m.pick_slot FROM mailboxes m
         WHERE {_RECEIVES} AND m.pick_slot < ({_START}) AND m.id <> $1
         ORDER BY m.pick_slot LIMIT $4)
    ) both_laps
    ORDER BY lap, pick_slot LIMIT $4
)
SELECT {_CANDIDATE_COLUMNS}
FROM slice JOIN mailboxes m ON m.id = slice.id
ORDER BY slice.lap, slice.pick_slot
"""


def _candidate(row: asyncpg.Record, pairs_today: Counter[int], pairs: Counter[int]) -> Candidate:
    cid = int(row["id"])
    return Candidate(
        id=cid,
        address=row["address"],
        user_id=row["user_id"],
        inbound_today=int(row["inbound_today"]),
        cap=inbound_cap(
            int(row["ramp_start"]),
            int(row["ramp_increment"]),
            int(row["ramp_ceiling"]),
            int(row["sent_yesterday"]),
        ),
        pair_today=pairs_today[cid],
        pair_window=pairs[cid],
        engages=bool(row["engages"]),
    )


async def choose_recipient(
    conn: Conn,
    sender_id: int,
    day: dt.date,
    idempotency_key: str,
    *,
    pair_repeat_days: int = PAIR_REPEAT_DAYS,
) -> Recipient | None:
    """A receiver for `sender_id` on `day` by the pool rules; None when no other mailbox is active
    (or the sender does not exist). `pair_repeat_days` below 1 counts as 1 (today)."""
    draws = key_draws(idempotency_key, PROBES + 1)
    rows = await conn.fetch(
        _PROBE,
        sender_id,
        day,
        idempotency_key,
        [unit(d) for d in draws[:PROBES]],
        max(1, pair_repeat_days),
    )
    if not rows:
        return None
    head = rows[0]
    last = head["last_address"]
    sender = Sender(
        user_id=head["sender_user"],
        domain=domain_of(head["sender_address"]),
        last_family=None if last is None else family_of(domain_of(last)),
    )
    pairs = Counter(int(i) for i in head["recent_ids"])
    pairs_today = Counter(int(i) for i in head["today_ids"])
    probed = [_candidate(r, pairs_today, pairs) for r in rows if r["id"] is not None]
    chosen = first_eligible(sender, probed)
    if chosen is None:
        scanned = await conn.fetch(_SCAN, sender_id, day, unit(draws[PROBES]), SCAN)
        found = probed + [_candidate(r, pairs_today, pairs) for r in scanned]
        # Once each: two probes on one slot must not give that receiver two chances among equals.
        pool = list({c.id: c for c in found}.values())
        chosen = best_of(sender, pool, idempotency_key)
    if chosen is None:
        return None
    return Recipient(chosen.id, chosen.address, relaxed_rules(sender, chosen))
