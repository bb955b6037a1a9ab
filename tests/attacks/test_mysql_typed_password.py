"""Attack kept as a regression test: a password typed into a statement, captured by MariaDB's server_audit."""

from __future__ import annotations

import uuid

import pytest

from bot.adapters.mysql import MysqlAdapter
from bot.redaction import blank_password_literals
from tests.adapters.conftest import mysql_server_url  # noqa: F401
from tests.adapters.test_mysql_activity import (  # noqa: F401
    ActingProbe,
    adapter,
    audited,
    bot,
    capture_database,
    probe,
    read_until,
    server,
    watched,
    world,
)


@pytest.mark.parametrize(
    "template",
    [
        "SET PASSWORD = PASSWORD('{secret}') /* {marker} */",
        "ALTER USER CURRENT_USER() IDENTIFIED BY '{secret}' /* {marker} */",
        "SET PASSWORD FOR CURRENT_USER() = PASSWORD('{secret}') /* {marker} */",
        "SELECT PASSWORD('{secret}'), '{marker}'",
        "CREATE USER 'bgatk{marker}'@'%' IDENTIFIED BY '{secret}'",
        "GRANT SELECT ON *.* TO 'bgatk{marker}'@'%' IDENTIFIED BY '{secret}'",
    ],
)
def test_a_password_in_a_captured_statement_is_blanked(
    adapter: MysqlAdapter,  # noqa: F811
    probe: ActingProbe,  # noqa: F811
    template: str,
) -> None:
    secret = "Typed" + uuid.uuid4().hex
    marker = f"bgpw{uuid.uuid4().hex[:8]}"
    with watched(adapter, probe) as (ctx, receipt):
        try:
            probe.run(ctx, receipt, template.format(secret=secret, marker=marker))
        except Exception as error:  # refused statements are logged too
            assert secret not in str(error)
        seen, _ = read_until(adapter, ctx, receipt, None, marker)
        # What the bot keeps and posts: the record as captured, with typed passwords blanked (bot.services.activity).
        mine = [blank_password_literals(item.action) for item in seen if marker in item.action]
        assert all(secret not in action for action in mine), f"a typed password was captured: {mine}"
