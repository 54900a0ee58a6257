"""Configuration: the audit's keys with its defaults, and errors that name the key and the range."""

from __future__ import annotations

import uuid
from typing import cast

import asyncpg
import pytest
from hypothesis import given
from hypothesis import strategies as st
from temporalio.testing import WorkflowEnvironment

from activities.engagement import EngagementActivities
from activities.send import SendActivities
from warmup.config import ConfigError, Settings, load_settings
from warmup.secrets import SecretBox, generate_key
from workers.worker import build_inbox_worker, build_worker

AUDIT_SCALE_CONFIG = {
    "SCHEDULER_INTERVAL_MS": 60_000,
    "JOBS_PER_SCHEDULER_RUN": 1000,
    "JOB_CLEANUP_DAYS": 7,
    "WORKER_CONCURRENCY": 10,
    "WORKER_COUNT": 5,
    "WORKER_JOB_BATCH_SIZE": 50,
    "SAME_MAILBOX_DELAY_MIN": 2,
    "SAME_MAILBOX_DELAY_MAX": 10,
    "SEND_WINDOW_START_HOUR": 6,
    "SEND_WINDOW_END_HOUR": 22,
    "GLOBAL_SENDS_PER_MINUTE": 100,
    "GLOBAL_SENDS_PER_HOUR": 5000,
    "USER_SENDS_PER_MINUTE": 5,
    "USER_SENDS_PER_HOUR": 300,
    "SCALE_UP_QUEUE_THRESHOLD": 1000,
    "SCALE_DOWN_IDLE_MINUTES": 10,
}


def test_every_audit_key_exists_with_the_audit_default() -> None:
    s = load_settings({})
    for key, default in AUDIT_SCALE_CONFIG.items():
        assert getattr(s, key) == default, key


def test_values_come_from_prefixed_environment_and_accept_fractions() -> None:
    s = load_settings(
        {
            "WARMUP_SAME_MAILBOX_DELAY_MIN": "0.05",
            "WARMUP_SAME_MAILBOX_DELAY_MAX": "0.25",
            "WARMUP_SEND_WINDOW_START_HOUR": "0",
            "WARMUP_SEND_WINDOW_END_HOUR": "24",
            "TEMPORAL_ADDRESS": "temporal:7233",
        }
    )
    sched = s.default_schedule("Europe/Berlin")
    assert (sched.delay_min_minutes, sched.delay_max_minutes) == (0.05, 0.25)
    assert (sched.window_start_hour, sched.window_end_hour) == (0, 24)
    assert s.TEMPORAL_ADDRESS == "temporal:7233"


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WARMUP_SAME_MAILBOX_DELAY_MIN": "abc"}, ["WARMUP_SAME_MAILBOX_DELAY_MIN='abc'", "a number"]),
        ({"WARMUP_SEND_WINDOW_END_HOUR": "25"}, ["WARMUP_SEND_WINDOW_END_HOUR='25'", "from 1 to 24"]),
        ({"WARMUP_WORKER_CONCURRENCY": "0"}, ["WARMUP_WORKER_CONCURRENCY='0'", "whole number"]),
        (
            {"WARMUP_SAME_MAILBOX_DELAY_MIN": "12", "WARMUP_SAME_MAILBOX_DELAY_MAX": "3"},
            ["WARMUP_SAME_MAILBOX_DELAY_MIN must not exceed WARMUP_SAME_MAILBOX_DELAY_MAX"],
        ),
        (
            {"WARMUP_SEND_WINDOW_START_HOUR": "22", "WARMUP_SEND_WINDOW_END_HOUR": "6"},
            ["WARMUP_SEND_WINDOW_START_HOUR must be before", "0 and 24"],
        ),
    ],
)
def test_bad_values_stop_start_up_naming_the_key_and_range(env: dict[str, str], expected: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    for fragment in expected:
        assert fragment in str(err.value)


@given(st.sampled_from([k for k, f in Settings.model_fields.items() if f.annotation in (int, float)]))
def test_any_numeric_key_with_text_is_rejected_by_name(key: str) -> None:
    with pytest.raises(ConfigError, match=f"WARMUP_{key}="):
        load_settings({f"WARMUP_{key}": "lots"})


def test_the_secret_keys_never_show_in_errors_or_repr() -> None:
    key = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="
    s = load_settings({"WARMUP_SECRET_KEYS": key})
    assert key not in repr(s) and key not in str(s)
    with pytest.raises(ConfigError) as err:
        load_settings({"WARMUP_SECRET_KEYS": key, "WARMUP_WORKER_COUNT": "-1"})
    assert key not in str(err.value)


@pytest.mark.parametrize(
    ("env", "slots"),
    [
        ({"WARMUP_WORKER_CONCURRENCY": "7"}, (7, 7)),  # unset: it follows the send slots
        ({"WARMUP_WORKER_CONCURRENCY": "7", "WARMUP_INBOX_CONCURRENCY": "300"}, (7, 300)),
    ],
)
async def test_the_inbox_worker_has_slots_of_its_own(
    time_skipping_env: WorkflowEnvironment, env: dict[str, str], slots: tuple[int, int]
) -> None:
    # A task queue of its own: the SDK refuses a second worker on a queue this process already serves.
    settings = load_settings({**env, "WARMUP_TASK_QUEUE": f"cfg-{uuid.uuid4().hex[:8]}"})
    box = SecretBox([generate_key()])
    unused = cast(asyncpg.Pool, None)  # the workers are built, not run
    client = time_skipping_env.client
    sends = build_worker(client, settings, SendActivities(unused, box, settings))
    inbox = build_inbox_worker(client, settings, EngagementActivities(unused, box, settings))
    assert (sends.config()["max_concurrent_activities"], inbox.config()["max_concurrent_activities"]) == slots
