"""What every request shares: the settings, a PostgreSQL pool, the Temporal client, the secret box."""

from __future__ import annotations

import dataclasses

import asyncpg
from fastapi import Request
from temporalio.client import Client

from warmup.config import Settings
from warmup.secrets import SecretBox


@dataclasses.dataclass
class State:
    settings: Settings
    pool: asyncpg.Pool
    client: Client
    box: SecretBox

    @staticmethod
    def of(request: Request) -> State:
        state: State = request.app.state.warmup
        return state
