"""The README is the user's manual: its configuration table and Quickstart must match the code."""

from __future__ import annotations

import re
from pathlib import Path

from warmup.config import Settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_setting_is_documented_with_its_default() -> None:
    for name, field in Settings.model_fields.items():
        env = name if name.startswith("TEMPORAL_") else f"WARMUP_{name}"
        row = re.search(rf"^\| `{env}` \| `([^`]*)` \|", README, re.MULTILINE)
        assert row, f"{env} is missing from the README's configuration table"
        default = field.default
        if not hasattr(default, "get_secret_value"):
            assert row.group(1) == str(default), f"{env}: README says {row.group(1)}, code says {default}"


def test_quickstart_is_exactly_make_dev_and_make_test() -> None:
    block = README.split("## Quickstart", 1)[1].split("```sh", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]
    assert commands == ["make dev", "make test"]
