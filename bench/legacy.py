"""The audit's legacy cron loop and its Phase 1 fix, simulated from the audit's own descriptions on
the same engine, mailboxes and quotas as this system.

Legacy (audit Part 1, issues #2-#4): one loop over the shuffled mailboxes, one email each, then a
blocking 3-15 minute delay, round and round all day. Bug #1 (status case) made every mailbox look
like it had its whole quota left, so the loop never skips a mailbox.

Phase 1 (audit Part 5): the case bug fixed, so each mailbox's remaining quota is known; per cycle
each mailbox sends up to 5 with 2-5 minutes between its own emails, followed by the shortened 0.5-2
minute inter-mailbox delay; mailboxes go in batches of 3 in parallel, 30 s between batches.

Neither had sending windows: both run the whole server day (UTC). Each email takes `send_seconds`
(an SMTP session; the audit gives no figure, 2 s is generous to both).
"""

from __future__ import annotations

import datetime as dt
import random
import time
from collections import defaultdict
from dataclasses import dataclass

from bench.des import Join, Process, Sim
from bench.fleet import SimMailbox

SEND_SECONDS = 2.0
LEGACY_DELAY = (3 * 60.0, 15 * 60.0)
PHASE1_PER_CYCLE = 5
PHASE1_SAME_MAILBOX_DELAY = (2 * 60.0, 5 * 60.0)
PHASE1_INTER_MAILBOX_DELAY = (30.0, 2 * 60.0)
PHASE1_BATCH = 3
PHASE1_BATCH_PAUSE = 30.0


@dataclass
class LoopDay:
    model: str
    sends: dict[int, list[float]]  # mailbox id -> times its emails left (epoch seconds)
    day_start: float
    day_end: float
    wall_seconds: float


def _server_day(day: dt.date) -> tuple[float, float]:
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp()
    return start, start + 86_400


def _legacy(
    sim: Sim, ids: list[int], rng: random.Random, sends: dict[int, list[float]], end: float
) -> Process:
    while sim.now < end:
        order = list(ids)
        rng.shuffle(order)
        for mailbox_id in order:
            yield sim.now + SEND_SECONDS  # await this.sendWarmupEmail(mailbox.mailboxId)  // ONE email
            sends[mailbox_id].append(sim.now)
            yield sim.now + rng.uniform(*LEGACY_DELAY)  # await delay(3-15 minutes)  // BLOCKING
            if sim.now >= end:
                return


def _phase1_mailbox(
    sim: Sim, mailbox_id: int, quota: int, rng: random.Random, sends: dict[int, list[float]]
) -> Process:
    remaining = quota - len(sends[mailbox_id])  # the fixed 'SENT' count
    for i in range(min(remaining, PHASE1_PER_CYCLE)):
        yield sim.now + SEND_SECONDS
        sends[mailbox_id].append(sim.now)
        if i < remaining - 1:
            yield sim.now + rng.uniform(*PHASE1_SAME_MAILBOX_DELAY)  # delay within same mailbox
    yield sim.now + rng.uniform(*PHASE1_INTER_MAILBOX_DELAY)  # INTER_MAILBOX_DELAY 0.5-2 min


def _phase1(
    sim: Sim, quotas: dict[int, int], rng: random.Random, sends: dict[int, list[float]], end: float
) -> Process:
    while sim.now < end:
        order = [m for m, q in quotas.items() if len(sends[m]) < q]
        if not order:
            return  # every quota filled: the cron finds nothing to do for the rest of the day
        rng.shuffle(order)
        for i in range(0, len(order), PHASE1_BATCH):
            batch = order[i : i + PHASE1_BATCH]
            yield Join([_phase1_mailbox(sim, m, quotas[m], rng, sends) for m in batch])
            yield sim.now + PHASE1_BATCH_PAUSE
            if sim.now >= end:
                return


def simulate_loop(
    model: str, fleet: list[SimMailbox], quotas: dict[int, int], day: dt.date, seed: str
) -> LoopDay:
    """Run `model` ("legacy" or "phase1") over the server day `day` (UTC) for these mailboxes."""
    began = time.perf_counter()
    start, end = _server_day(day)
    sim = Sim(start)
    rng = random.Random(f"{seed}:{model}:{day}")
    sends: dict[int, list[float]] = defaultdict(list)
    if model == "legacy":
        sim.spawn(_legacy(sim, [m.mailbox_id for m in fleet], rng, sends, end))
    elif model == "phase1":
        sim.spawn(_phase1(sim, {m.mailbox_id: quotas[m.mailbox_id] for m in fleet}, rng, sends, end))
    else:
        raise ValueError(f"unknown loop model {model!r}: use 'legacy' or 'phase1'")
    sim.run(until=end)
    # A send still in flight at midnight belongs to tomorrow.
    inside = {m: [t for t in ts if t < end] for m, ts in sends.items()}
    return LoopDay(model, inside, start, end, time.perf_counter() - began)
