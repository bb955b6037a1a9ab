"""Real backends for the adapter tests.

Servers that run on loopback on every development and CI machine (PostgreSQL, MariaDB, Redis) are found through
an environment variable and skipped, with the reason, where it is unset; in CI (``CI`` set) they never skip.
Servers the tests start themselves (slapd, moto) live next to the tests that use them.
"""

from __future__ import annotations

import os

import pytest


def service_url(variable: str, example: str) -> str:
    url = os.environ.get(variable)
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail(f"{variable} must be set in CI: adapter tests never skip there", pytrace=False)
    pytest.skip(f"set {variable} (e.g. {example}) to run this adapter against the real server")


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    return service_url("BREAKGLASS_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def mysql_server_url() -> str:
    return service_url("BREAKGLASS_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test")


@pytest.fixture(scope="session")
def redis_server_url() -> str:
    return service_url("BREAKGLASS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def in_ci() -> bool:
    return bool(os.environ.get("CI"))
