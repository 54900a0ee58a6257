"""This system's day in the discrete-event engine: each mailbox is a process that drives the very
`DaySchedule` the workflow drives, with the simulated clock in place of workflow time.

`mailbox_process` mirrors the loop of `workflows/mailbox.py` step for step (start the day if new,
re-spread if needed, sleep until the next send or tomorrow's window, take the slot, send, record);
pause, remove and continue-as-new do not happen in a simulated day and are left out. The send
activity's outcome is always "sent", after `latency` seconds.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from bench.des import Process, Sim
from bench.fleet import SimMailbox
from warmup.day_schedule import DaySchedule


@dataclass(frozen=True)
class SimSend:
    mailbox_id: int
    day: str
    slot: int
    planned_at: float
    dispatched_at: float

    @property
    def key(self) -> tuple[int, str, int]:
        return (self.mailbox_id, self.day, self.slot)


@dataclass
class SimDay:
    day: dt.date
    sends: list[SimSend]
    quotas: dict[int, int]  # mailbox id -> the DaySchedule's quota for `day`
    capped: dict[int, str]  # mailbox id -> why the window could not hold the quota (rare)
    steps: int  # events the engine processed
    wall_seconds: float


def mailbox_process(
    sim: Sim, day_schedule: DaySchedule, stop_at: float, latency: float, sends: list[SimSend]
) -> Process:
    while True:
        now = sim.now
        day_schedule.start_day_if_new(now)
        if day_schedule.respread_needed:
            day_schedule.respread(now)
        due = day_schedule.next_send_at()
        if due is None or due > now:
            wake = day_schedule.next_wake(now)
            if wake >= stop_at:
                return
            yield wake  # the workflow's durable timer
            continue
        req = day_schedule.take_slot(now)
        sends.append(SimSend(req.mailbox_id, req.day, req.slot, req.planned_at, req.dispatched_at))
        if latency > 0:
            yield now + latency  # the send_email activity
        day_schedule.record_sent(sim.now)


def simulate_day(fleet: list[SimMailbox], day: dt.date, *, latency: float = 0.0) -> SimDay:
    """Every mailbox from its local midnight of `day` to the next: enrolled fresh at its ramp day."""
    began = time.perf_counter()
    sim = Sim(min(m.enrolled_at(day) for m in fleet))
    sends: list[SimSend] = []
    day_schedules = []
    for m in fleet:
        day_schedule = DaySchedule(m.mailbox_id, m.schedule, m.initial_state())
        day_schedules.append(day_schedule)
        sim.spawn(mailbox_process(sim, day_schedule, m.horizon(day), latency, sends), at=m.enrolled_at(day))
    sim.run(until=max(m.horizon(day) for m in fleet))
    quotas, capped = {}, {}
    for p in day_schedules:
        today = p.state.today
        if today.day != day.isoformat():
            raise AssertionError(f"mailbox {p.mailbox_id} ended the simulation on {today.day}, not {day}")
        quotas[p.mailbox_id] = today.quota
        if today.capped_reason:
            capped[p.mailbox_id] = today.capped_reason
    return SimDay(day, sends, quotas, capped, sim.steps, time.perf_counter() - began)
