"""What `starter update` accepts: the updatable settings (warmup.mailbox_settings.UPDATABLE) checked
exactly like `enroll`'s, against the mailbox's stored schedule, so a flag left out keeps its current
value and the result is whole."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from starter.enroll_request import EnrollValidationError, check_settings
from warmup import mailbox_settings as ms
from warmup.mailbox_settings import Label, flag_label
from warmup.models import ScheduleSettings, SettingsUpdate

_KEPT = "(a flag left out keeps the mailbox's current value)"


@dataclasses.dataclass(frozen=True)
class ScheduleUpdate:
    schedule: ScheduleSettings  # the whole new schedule, for the database
    signal: SettingsUpdate  # the same schedule, for the running workflow
    changed: tuple[str, ...]  # setting names whose value differs from the current schedule


def parse_schedule_change(
    current: ScheduleSettings, changes: Mapping[str, object], label: Label = flag_label
) -> ScheduleUpdate:
    """Merge `changes` (raw values by setting name; None = not given) into `current`, or raise
    EnrollValidationError."""
    unknown = set(changes) - {s.name for s in ms.UPDATABLE}
    if unknown:
        raise ValueError(f"not updatable settings: {sorted(unknown)}")
    given, problems = check_settings(changes, ms.UPDATABLE, label)
    if problems:
        raise EnrollValidationError(problems)
    before = ms.schedule_values_of(current)
    values = {**before, **given}
    problems = ms.cross_problems(values, label, window=_KEPT, delay=_KEPT, ramp=_KEPT, kept=_KEPT)
    if problems:
        raise EnrollValidationError(problems)
    schedule = ms.schedule_from(values, current)
    changed = tuple(s.name for s in ms.UPDATABLE if before[s.name] != values[s.name])
    # The whole schedule, not only the changes: afterwards the database and the workflow agree, even
    # if the workflow had been changed behind the database's back (a signal from the Temporal CLI).
    return ScheduleUpdate(schedule, ms.settings_update(schedule), changed)
