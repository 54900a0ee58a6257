"""The ledger upkeep activity (warmup/ledger_retention.py), run on the inbox side queue by
workflows/ledger_upkeep.py: idempotent, so a retry or a SIGKILL only repeats work."""

from __future__ import annotations

import datetime as dt

import asyncpg
from temporalio import activity

from warmup.config import Settings
from warmup.ledger_retention import upkeep
from warmup.models import LedgerUpkeep


class LedgerActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings) -> None:
        self._pool = pool
        self._settings = settings

    @activity.defn(name="ledger_upkeep")
    async def ledger_upkeep(self) -> LedgerUpkeep:
        """Partitions ahead, old bodies cleared, old days dropped, by this worker's settings."""
        return await upkeep(
            self._pool,
            dt.datetime.now(dt.UTC).date(),
            body_days=self._settings.JOB_CLEANUP_DAYS,
            keep_days=self._settings.LEDGER_RETENTION_DAYS,
            heartbeat=activity.heartbeat,
        )
