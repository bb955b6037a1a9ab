"""Attacks a reviewer made on issue 12's work, kept as regression tests: the e2e harness's fixtures, reused."""

from tests.e2e.conftest import *  # noqa: F403
