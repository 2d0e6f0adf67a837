"""Fixtures of the integration tests that several packages share: one testbed for the scenario and sweep tests
(tests/integration/shared_bed.py)."""

from __future__ import annotations

from tests.integration.shared_bed import offline, shared_bed

__all__ = ["offline", "shared_bed"]
