"""What `starter update` accepts: schedule flags checked exactly like `enroll`'s, against the
mailbox's stored schedule, so a flag left out keeps its current value and the result is whole."""

from __future__ import annotations

import dataclasses

from pydantic import ValidationError, model_validator

from starter.enroll_request import EnrollValidationError, ScheduleFields, validation_problems
from warmup.models import ScheduleSettings, SettingsUpdate

_KEPT = "(a flag left out keeps the mailbox's current value)"

# The update's fields, as `ScheduleFields` names them.
FIELDS = (
    "timezone",
    "window_start_hour",
    "window_end_hour",
    "delay_min_minutes",
    "delay_max_minutes",
    "ramp_start",
    "ramp_increment",
    "ramp_ceiling",
    "ramp_variance",
)


class ScheduleChange(ScheduleFields):
    @model_validator(mode="after")
    def _cross_checks(self) -> ScheduleChange:
        problems = self.schedule_problems(window=_KEPT, delay=_KEPT, ramp=_KEPT)
        if problems:
            raise ValueError("\n".join(problems))
        return self


def _current_values(current: ScheduleSettings) -> dict[str, object]:
    r = current.ramp
    return {
        "timezone": current.timezone,
        "window_start_hour": current.window_start_hour,
        "window_end_hour": current.window_end_hour,
        "delay_min_minutes": current.delay_min_minutes,
        "delay_max_minutes": current.delay_max_minutes,
        "ramp_start": r.start_volume,
        "ramp_increment": r.daily_increment,
        "ramp_ceiling": r.ceiling,
        "ramp_variance": r.daily_variance,
    }


@dataclasses.dataclass(frozen=True)
class ScheduleUpdate:
    schedule: ScheduleSettings  # the whole new schedule, for the database
    signal: SettingsUpdate  # the same schedule, for the running workflow
    changed: tuple[str, ...]  # field names that differ from the current schedule


def parse_schedule_change(
    current: ScheduleSettings, changes: dict[str, object], weekdays_only: bool | None = None
) -> ScheduleUpdate:
    """Merge `changes` (raw values; None = not given) into `current`, or raise EnrollValidationError.

    `weekdays_only` is a switch (--weekdays-only/--all-days), not a value to validate: None keeps it.
    """
    unknown = set(changes) - set(FIELDS)
    if unknown:
        raise ValueError(f"not schedule fields: {sorted(unknown)}")
    values = _current_values(current)
    values.update({k: v for k, v in changes.items() if v is not None})
    try:
        model = ScheduleChange.model_validate(values)
    except ValidationError as exc:
        raise EnrollValidationError(validation_problems(exc)) from None
    schedule = dataclasses.replace(
        current,
        timezone=model.timezone,
        window_start_hour=model.window_start_hour,
        window_end_hour=model.window_end_hour,
        delay_min_minutes=model.delay_min_minutes,
        delay_max_minutes=model.delay_max_minutes,
        ramp=model.ramp,
        weekdays_only=current.weekdays_only if weekdays_only is None else weekdays_only,
    )
    before = _current_values(current)
    after = _current_values(schedule)
    changed = tuple(k for k in FIELDS if before[k] != after[k])
    if schedule.weekdays_only != current.weekdays_only:
        changed += ("weekdays_only",)
    # The whole schedule, not only the changes: afterwards the database and the workflow agree, even
    # if the workflow had been changed behind the database's back (a signal from the Temporal CLI).
    signal = SettingsUpdate(
        **{
            f.name: getattr(schedule, f.name)
            for f in dataclasses.fields(SettingsUpdate)
            if hasattr(schedule, f.name)
        }
    )
    return ScheduleUpdate(schedule, signal, changed)
