"""`python -m api`: the HTTP API and dashboard on WARMUP_API_HOST:WARMUP_API_PORT (uvicorn).

Configuration is the workers' and the starter's (WARMUP_DATABASE_URL, WARMUP_SECRET_KEYS,
TEMPORAL_ADDRESS, ...); `--openapi` prints the OpenAPI document instead (docs/openapi.json)."""

from __future__ import annotations

import argparse
import json
import sys

import uvicorn

from api.app import create_app
from warmup.config import ConfigError, load_settings
from warmup.process_exit import EXIT_USAGE, exit_skipping_teardown


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m api", description=__doc__)
    parser.add_argument("--openapi", action="store_true", help="print the OpenAPI document and exit")
    args = parser.parse_args()
    try:
        settings = load_settings()
    except ConfigError as exc:
        if not args.openapi:
            print(f"api: {exc}", file=sys.stderr)
            return EXIT_USAGE
        settings = None
    if args.openapi:
        from api.openapi import document

        print(json.dumps(document(), indent=2))
        return 0
    assert settings is not None
    # The access log has paths and status codes only: tokens travel in headers and cookies, passwords
    # in bodies, and uvicorn logs neither.
    uvicorn.run(create_app(settings), host=settings.API_HOST, port=settings.API_PORT, log_level="info")
    return 0


if __name__ == "__main__":
    exit_skipping_teardown(main())
