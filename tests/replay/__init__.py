"""Recorded workflow histories and the script that records them (see docs/versioning.md)."""
