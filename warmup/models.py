"""Types that cross a boundary: workflow inputs, signals, queries, activity inputs and results.

Plain dataclasses so Temporal's default converter handles them and the workflow sandbox imports
them cheaply. Nothing here may ever hold a secret: all of it lands in workflow history.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from enum import StrEnum


class SendStatus(StrEnum):
    """The one status vocabulary of the send ledger (the audit's bug #1 was 'SENT' vs 'sent').

    The database column is a PostgreSQL enum of exactly these values, so a writer or a query
    using another spelling fails loudly instead of counting zero.
    """

    PENDING = "PENDING"  # recorded, message built, DATA not yet started
    SENDING = "SENDING"  # DATA under way: a crash here means the outcome is unknown
    SENT = "SENT"  # the server answered 250 to DATA
    FAILED = "FAILED"  # the server refused it; nothing was delivered
    UNKNOWN = "UNKNOWN"  # DATA was sent but no reply arrived: never resent blindly
    REPLIED = "REPLIED"  # delivered and answered by the receiver (engagement, later)


# Statuses that mean "a warmup email was delivered": every quota query counts exactly these.
DELIVERED_STATUSES: tuple[SendStatus, ...] = (SendStatus.SENT, SendStatus.REPLIED)


class MailboxState(StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    REMOVED = "removed"


class SmtpSecurity(StrEnum):
    STARTTLS = "starttls"  # required upgrade (port 587/25)
    TLS = "tls"  # implicit TLS (port 465)
    NONE = "none"  # clear text: only for a local test or dev server, must be chosen explicitly


class ImapSecurity(StrEnum):
    TLS = "tls"  # implicit TLS (port 993)
    STARTTLS = "starttls"  # upgrade required (port 143)
    NONE = "none"  # clear text: loopback only (a local test server)


@dataclass(frozen=True)
class RampSettings:
    start_volume: int = 5
    daily_increment: int = 2
    ceiling: int = 40
    daily_variance: float = 0.0  # +/- fraction, drawn per mailbox-day from a seeded generator


@dataclass(frozen=True)
class EngagementSettings:
    """How a mailbox treats the warmup mail it receives; each rate is a probability per email. Bounds and
    help are declared in warmup/mailbox_settings.py; these defaults are near the peers' (issue #11)."""

    enabled: bool = False  # the mailbox has IMAP settings (derived at enroll from --imap-host)
    inbox_sessions: int = 4  # IMAP logins a day, at random times inside the mailbox's window
    read_rate: float = 0.95  # marked \Seen
    rescue_rate: float = 0.85  # moved out of Junk into INBOX, when found in Junk
    important_rate: float = 0.3  # marked \Flagged
    reply_rate: float = 0.3  # answered in-thread
    dwell_min_seconds: float = 5.0  # a human's pause between finding an email and acting on it
    dwell_max_seconds: float = 60.0
    reply_delay_min_minutes: float = 45.0  # how long after reading it the answer goes out
    reply_delay_max_minutes: float = 300.0


@dataclass(frozen=True)
class ScheduleSettings:
    timezone: str = "UTC"
    window_start_hour: int = 6
    window_end_hour: int = 22  # 24 means midnight at the end of the day
    delay_min_minutes: float = 2.0
    delay_max_minutes: float = 10.0
    ramp: RampSettings = field(default_factory=RampSettings)
    # True: the day's sends come in short bursts spread over the whole window (human-like).
    # False: one chain of [delay_min, delay_max] gaps from the window's start (demos, compressed time).
    spread_over_window: bool = True
    # True: no sends on Saturday and Sunday (the mailbox's local days); the ramp does not advance then.
    weekdays_only: bool = False
    # What the mailbox does with the mail it receives (issue #11); absent in histories recorded before it.
    engagement: EngagementSettings = field(default_factory=EngagementSettings)


@dataclass(frozen=True)
class SendRetrySettings:
    initial_seconds: float = 30.0
    max_seconds: float = 600.0
    max_attempts: int = 6
    smtp_timeout_seconds: float = 30.0
    # A send whose worker stopped heartbeating this long is retried (on another worker).
    heartbeat_seconds: float = 30.0


@dataclass
class DayProgress:
    """Where a mailbox is in its current local day."""

    day: str = ""  # local date, ISO format; "" before the first day starts
    quota: int = 0
    slot: int = 0  # slots consumed today (sent, failed or unknown): the next slot's number
    sent: int = 0
    failed: int = 0
    unknown: int = 0
    # The remaining send times (epoch seconds), and how often today was re-spread. Their names are
    # older than the rule that "plan" means only the user's billing plan; recorded histories carry them.
    plan: list[float] = field(default_factory=list)
    replans: int = 0
    window_end: float = 0.0  # epoch seconds
    capped_reason: str = ""  # set when the window cannot hold the ramp quota
    binding_cap: str = ""  # the send cap that last made a send of today's wait
    allowance: int | None = None  # the user's plan share for today, once the parent granted it
    # Inbox sessions (issue #11): today's remaining session times (epoch seconds), and how many ran.
    sessions: list[float] = field(default_factory=list)
    sessions_done: int = 0
    engagement_note: str = ""  # why no session runs today (no IMAP settings), "" when they do
    ramp_note: str = ""  # what today's placement check did to the ramp (issue #15), "" when it climbs
    ramp_advanced: bool = False  # today's ramp day counts yesterday (it sent): what holding takes back
    # The sender's provider refused more mail today (550 5.4.5...): its reply; no more sends until the
    # next window, and the ramp holds tomorrow (issue #15 item 4). "" = no limit hit.
    provider_limit: str = ""


@dataclass
class EngagementTotals:
    """What a mailbox's inbox sessions found and did: placements of the warmup emails it received, and
    the actions it took on them."""

    sessions: int = 0
    inbox: int = 0  # found in INBOX
    junk: int = 0  # found in Junk/Spam
    other: int = 0  # found in another folder
    missing: int = 0  # not found in time (counted once, when given up)
    rescued: int = 0  # moved out of Junk into INBOX
    read: int = 0  # marked \Seen
    flagged: int = 0  # marked \Flagged
    replies_due: int = 0  # answers decided (sent later from a send slot)

    def add(self, other: EngagementTotals) -> None:
        for f in dataclasses.fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass(frozen=True)
class InboxSessionRequest:
    mailbox_id: int
    day: str  # the mailbox's local day, ISO
    session: int  # today's session number, from 0: with the day, the session's idempotency key


@dataclass(frozen=True)
class InboxSessionReport:
    """One inbox session's outcome; `off` says why engagement is off ("" = it ran)."""

    found: EngagementTotals = field(default_factory=EngagementTotals)
    off: str = ""
    family: str = ""  # the receiving mailbox's provider family (warmup.placement), a metrics label


@dataclass(frozen=True)
class ReactionSettings:
    """Thresholds and steps; the workers' WARMUP_PLACEMENT_* settings (warmup/config.py) fill them;
    they reach the workflow in the placement check's result, so a replay sees the same ones."""

    min_judged: int = 10  # fewer judged emails than this: too little data to react to
    hold_share: float = 0.10
    step_down_share: float = 0.25
    pause_share: float = 0.50
    step_down_days: int = 2  # ramp days taken back per step down
    spacing_step: float = 1.5  # spacing multiplied by this per step down, divided per healthy day
    max_spacing_factor: float = 4.0
    bounce_pause: int = 3  # sender bounces (5.7.x...) over the window that pause the mailbox


PLACES = ("inbox", "junk", "other", "missing")  # where a received warmup email was first found


@dataclass
class Placement:
    """Where emails were first found: counts per place."""

    inbox: int = 0
    junk: int = 0
    other: int = 0
    missing: int = 0

    @property
    def judged(self) -> int:
        """Emails whose place is known: found somewhere, or given up as missing."""
        return self.inbox + self.junk + self.other + self.missing

    @property
    def inbox_share(self) -> float | None:
        """The placement: inbox / judged (missing mail did not reach the inbox), None with no data."""
        return self.inbox / self.judged if self.judged else None

    def add(self, place: str, n: int) -> None:
        setattr(self, place, getattr(self, place) + n)

    def text(self) -> str:
        """`76% inbox (13 of 17)`, or `no data`."""
        share = self.inbox_share
        return "no data" if share is None else f"{share * 100:.0f}% inbox ({self.inbox} of {self.judged})"


@dataclass(frozen=True)
class PlacementReport:
    """What the `placement_check` activity read for a sender: its placement over `days` send days."""

    placement: Placement = field(default_factory=Placement)
    days: int = 7
    settings: ReactionSettings = ReactionSettings()
    # Bounces that are a verdict on the sender's mail (activities/bounces.py) over the same days, and
    # the latest one's reply. Absent from reports recorded before them: 0, which changes no decision.
    bounces: int = 0
    bounce_reply: str = ""


@dataclass(frozen=True)
class PlacementCheckRequest:
    mailbox_id: int
    day: str  # the sender's new local day (ISO): the placement is over the send days before and up to it


@dataclass
class MailboxWorkflowState:
    """Everything carried across continue-as-new."""

    ramp_day: int = 0  # warmed days completed before today
    today: DayProgress = field(default_factory=DayProgress)
    paused: bool = False
    pause_reason: str = ""
    last_error: str = ""
    last_sent_at: float = 0.0  # epoch seconds of the last dispatched send
    sent_total: int = 0
    runs: int = 1  # workflow runs so far (1 + continue-as-new count)
    # Why this mailbox does not read its mail ("" = it does): no IMAP settings, or a login the server
    # refused. Sending goes on either way; a settings change or a resume tries again.
    engagement_off: str = ""
    # What its inbox sessions did so far, over every run (for status and the metrics).
    engagement: EngagementTotals = field(default_factory=EngagementTotals)
    # Spacing multiplier left by placement step-downs (issue #15); 1.0 = the settings' own spacing.
    spacing_factor: float = 1.0


@dataclass
class MailboxWorkflowInput:
    mailbox_id: int
    user_id: str
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    retry: SendRetrySettings = field(default_factory=SendRetrySettings)
    state: MailboxWorkflowState | None = None
    # Tests set this to force continue-as-new after N sends; None means "when Temporal suggests".
    continue_as_new_after_sends: int | None = None
    # True: each run holds one local day (it continues as new when a day that sent ends), so a cache
    # miss replays about 225 events, not up to 4,096. False: only when Temporal suggests (the bench's
    # comparison). Runs started before the bound keep the old path (workflow.patched).
    one_day_per_run: bool = True
    # The user's plan weight: its share of the global cap when users contend (Temporal fairness).
    fairness_weight: float = 1.0
    # Set when a UserWarmupWorkflow with a plan limit owns this mailbox: ask it for each day's share.
    plan_parent_id: str | None = None
    # Keep UserId/MailboxId/WarmupStatus current for the Web UI (off where they are not registered).
    search_attributes: bool = True


@dataclass(frozen=True)
class SettingsUpdate:
    """Signal payload: only the fields given change."""

    timezone: str | None = None
    window_start_hour: int | None = None
    window_end_hour: int | None = None
    delay_min_minutes: float | None = None
    delay_max_minutes: float | None = None
    ramp: RampSettings | None = None
    spread_over_window: bool | None = None
    weekdays_only: bool | None = None
    engagement: EngagementSettings | None = None
    fairness_weight: float | None = None  # not a schedule field: the user's plan weight
    plan_parent_id: str | None = None  # not a schedule field: "" stops asking a parent for allowances


@dataclass(frozen=True)
class PauseRequest:
    reason: str = "paused by operator"


@dataclass(frozen=True)
class AllowanceRequest:
    """Mailbox -> user workflow: today's ramp quota, asking for the plan's share."""

    mailbox_id: int
    day: str
    wanted: int


@dataclass(frozen=True)
class AllowanceGrant:
    """User workflow -> mailbox: how many sends the plan allows it on `day`."""

    day: str
    allowance: int


@dataclass(frozen=True)
class SendRequest:
    mailbox_id: int
    day: str  # local date of the slot, part of the idempotency key
    slot: int
    planned_at: float  # epoch seconds the plan chose
    dispatched_at: float  # workflow time the send was started
    not_after: float = 0.0  # the window's end: waiting for a cap past it gives the slot up (0: no limit)
    quota: int = 0  # the day's quota when the slot was taken, kept in the ledger for the dashboard's charts

    @property
    def idempotency_key(self) -> str:
        # A business key, not a run id: it survives retries and continue-as-new.
        return f"{self.mailbox_id}:{self.day}:{self.slot}"


def day_of_key(idempotency_key: str) -> dt.date:
    """The local day inside a send's key (`SendRequest.idempotency_key`, mailbox:day:slot): the ledger
    keeps the row in that day's partition, so a statement by key names it and reads one partition."""
    try:
        return dt.date.fromisoformat(idempotency_key.split(":")[1])
    except (IndexError, ValueError):
        raise ValueError(f"{idempotency_key!r} is not a send's key (mailbox:YYYY-MM-DD:slot)") from None


@dataclass(frozen=True)
class SendResult:
    status: SendStatus
    recipient_id: int
    message_id: str
    already_done: bool = False  # True when a retry found the slot already settled
    binding_cap: str = ""  # the cap setting that made this send wait, if one did


@dataclass(frozen=True)
class MailboxStatus:
    mailbox_id: int
    user_id: str
    day: str
    sent_today: int
    quota_today: int
    failed_today: int
    unknown_today: int
    next_send_at: str | None  # ISO 8601 UTC, None when done for today or paused
    ramp_day: int
    paused: bool
    pause_reason: str
    last_error: str
    sent_total: int
    capped_reason: str
    timezone: str
    binding_cap: str = ""  # e.g. "USER_SENDS_PER_MINUTE": the cap that held sends back today
    weekdays_only: bool = False
    # What a due send waits for, "" when nothing holds it back: the plan's allowance, a send in
    # flight (its attempts may wait for a cap or retry an error; `starter status` adds the last
    # attempt's failure from the workflow's pending activity), a resume.
    waiting_for: str = ""
    sending_since: str | None = None  # ISO 8601 UTC: a send activity has been in flight since then
    next_session_at: str | None = None  # ISO 8601 UTC: the next inbox session, None when none is due today
    engagement_off: str = ""  # why the mailbox does not read its mail, "" when it does
    engagement: EngagementTotals | None = None
    ramp_note: str = ""  # what today's placement check did to the ramp, "" when it climbs as configured


# --- The per-user parent workflow ---------------------------------------------------------------


@dataclass(frozen=True)
class UserPlan:
    plan: str = "free"
    daily_limit: int | None = None  # sends a day across all the user's mailboxes; None: no limit
    weight: float = 1.0  # share of the global cap under contention (from WARMUP_PLAN_WEIGHTS)


@dataclass(frozen=True)
class MailboxEnrollment:
    mailbox_id: int
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    retry: SendRetrySettings = field(default_factory=SendRetrySettings)
    # The mailbox's owner, so a user workflow refuses another tenant's mailbox. "" (histories
    # recorded before the field existed) is taken as the workflow's own user.
    user_id: str = ""


@dataclass
class MailboxEnrollments:
    """Many mailboxes of one user at once (the `enroll_mailboxes` update of a bulk import)."""

    enrollments: list[MailboxEnrollment] = field(default_factory=list)


@dataclass(frozen=True)
class EnrollResult:
    """The user workflow's answer to an enrollment (the `enroll_mailbox` update)."""

    mailbox_id: int
    started: bool  # True: its mailbox workflow was started; False: the running one got the new settings


@dataclass
class ChildMailbox:
    mailbox_id: int
    ramp: RampSettings
    wanted: int  # the quota it last asked a share for (its start volume before that)
    wanted_day: str = ""  # the day of that request
    removed: bool = False


@dataclass
class UserWorkflowState:
    mailboxes: dict[str, ChildMailbox] = field(default_factory=dict)  # str keys: JSON objects
    grants: dict[str, dict[str, int]] = field(default_factory=dict)  # day -> mailbox -> allowance
    paused: bool = False
    pause_reason: str = ""
    runs: int = 1


@dataclass
class UserWorkflowInput:
    user_id: str
    plan: UserPlan = field(default_factory=UserPlan)
    search_attributes: bool = True
    state: UserWorkflowState | None = None
    continue_as_new_after_events: int | None = None  # tests force continue-as-new; None: when suggested


@dataclass(frozen=True)
class UserStatus:
    user_id: str
    plan: str
    daily_limit: int | None
    mailbox_ids: list[int]
    removed_ids: list[int]
    paused: bool
    pause_reason: str
    granted: dict[str, int]  # day -> sends the plan granted that day (recent days)


@dataclass(frozen=True)
class WebhookDeliveryInput:
    """The webhook delivery workflow's settings (workflows/webhooks.py)."""

    poll_seconds: float = 15.0  # how long an event may wait before it is sent
    rounds_per_run: int = 400  # activity calls before continue-as-new (bounds the history)
    batch: int = 50  # deliveries per activity call at most; while more are due the next call follows


@dataclass(frozen=True)
class LedgerUpkeepInput:
    """The ledger upkeep workflow's settings (workflows/ledger_upkeep.py); the retention lengths are the
    workers' own settings, read by the activity, so a change needs no new workflow."""

    interval_seconds: float = 3600.0  # between rounds: partitions are made days ahead, so hourly is plenty
    rounds_per_run: int = 200  # rounds before continue-as-new (bounds the history)


@dataclass(frozen=True)
class LedgerUpkeep:
    """What one round of ledger upkeep did (warmup/ledger_retention.py)."""

    partitions_made: int = 0
    bodies_cleared: int = 0
    days_trimmed: int = 0
    partitions_dropped: int = 0


@dataclass(frozen=True)
class WebhookRound:
    """What one `deliver_webhooks` call did."""

    sent: int
    failed: int
    next_due_in: float | None  # seconds until the next delivery is due; None: nothing waits
