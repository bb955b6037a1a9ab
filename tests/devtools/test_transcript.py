"""The transcript shows what a person sees in Slack: formatting, not markers; text as typed; forms and pages in a
box; colour only where asked for."""

from __future__ import annotations

import io

import pytest

from bot.devtools.transcript import home, message, modal, text, use_colour, width
from bot.slack import fields
from bot.slack.ids import ActionId
from bot.slack.text import code, escape, quote

NAMES = {"U0BOB": "bob", "S0SRELEADS": "@sre-leads", "C0INCIDENT": "#incident-4211"}


@pytest.mark.parametrize(
    ("mrkdwn", "shown"),
    [
        ("*Requester* Bob", "Requester Bob"),
        ("_italic_ and *bold _both_*", "italic and bold both"),
        ("`orders-db:read` for 30m", "`orders-db:read` for 30m"),
        ("`code *not bold*`", "`code *not bold*`"),
        ("2*3*4 and a * b * c", "2*3*4 and a * b * c"),  # not at word boundaries: as typed
        ("orders_stuck_tmp and snake_case_name", "orders_stuck_tmp and snake_case_name"),
        ("* not bold*", "* not bold*"),
        ("<@U0BOB> and <!subteam^S0SRELEADS|@sre-leads> in <#C0INCIDENT>", "@bob and @sre-leads in #incident-4211"),
        ("<@U0NOBODY>", "@U0NOBODY"),
        ("<https://slack.example/p1|Open request #1>", "Open request #1 (https://slack.example/p1)"),
        ("<!date^1767259800^{date_short_pretty} at {time}|2026-01-01 09:30 UTC>", "2026-01-01 09:30 UTC"),
        ("<!here>", "@here"),
        ("a &lt;b&gt; &amp;lt; c", "a <b> &lt; c"),
        ("⏰ :wave: 🚨", "⏰ :wave: 🚨"),
        ("*unclosed and `odd", "*unclosed and `odd"),
    ],
)
def test_mrkdwn_reads_as_slack_shows_it(mrkdwn: str, shown: str) -> None:
    assert text(mrkdwn, NAMES) == shown


def test_text_people_typed_reads_back_as_typed_however_hostile() -> None:
    typed = "<@U0BOB> <!here> @here &amp; <https://evil|click> 2*3 `tick"
    rendered = text(f"*Reason* {escape(typed)}", NAMES)
    # Their tokens stay text (no mention, no link), their entities read as typed, a lone marker stays a character.
    assert rendered == "Reason <@U0BOB> <!here> @\u2060here &amp; <https://evil|click> 2*3 \u02cbtick"
    assert text(code("a*b*c <x>"), NAMES) == "`a*b*c <x>`"


def test_quotes_and_code_blocks_lose_their_markers_and_keep_their_lines() -> None:
    quoted = quote("line one\n*line two*")
    shown = text(f"Instructions:\n{quoted}\n```\nSELECT * FROM t\n⚑ DROP x_y_z\n```", NAMES)
    assert shown.splitlines() == ["Instructions:", "▎ line one", "▎ line two", "┆ SELECT * FROM t", "┆ ⚑ DROP x_y_z"]


def test_colour_styles_instead_of_markers_and_never_leaks_into_plain_text() -> None:
    coloured = text("*Requester* `U0BOB` _now_ ~gone~ <@U0BOB>", NAMES, colour=True)
    assert "\033[1mRequester\033[0m" in coloured and "\033[3mnow\033[0m" in coloured
    assert "\033[7m U0BOB \033[0m" in coloured and "\033[9mgone\033[0m" in coloured and "*" not in coloured
    plain = text("*Requester* `U0BOB` _now_ ~gone~", NAMES)
    assert "\033" not in plain and "*" not in plain and "_" not in plain and "~" not in plain
    assert width(coloured) == width(text("*Requester* `U0BOB` _now_ <@U0BOB>", NAMES)) + len(" gone")


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_colour_only_on_a_terminal_and_never_with_no_color() -> None:
    assert use_colour(_Stream(tty=True), {})
    assert use_colour(_Stream(tty=True), {"NO_COLOR": ""})  # https://no-color.org: only a non-empty value counts
    assert not use_colour(_Stream(tty=True), {"NO_COLOR": "1"})
    assert not use_colour(_Stream(tty=False), {})
    assert not use_colour(io.StringIO(), {})


def _form() -> dict[str, object]:
    resource = fields.static_select(
        ActionId.PICK_RESOURCE,
        [fields.option("orders-db", "orders-db"), fields.option("payments-admin", "payments-admin")],
        initial=fields.option("orders-db", "orders-db"),
    )
    return {
        "type": "modal",
        "callback_id": "request-access",
        "title": fields.plain("Request access"),
        "submit": fields.plain("Request"),
        "close": fields.plain("Cancel"),
        "blocks": [
            fields.input_block("resource", "Resource", resource, dispatch_action=True),
            fields.input_block(
                "reason",
                "Reason",
                fields.text_input("reason", multiline=True, placeholder="What broke, and the ticket"),
                hint="Must mention a reference matching (INC|CHG)-[0-9]+",
            ),
            fields.input_block(
                "emergency",
                "Emergency",
                fields.checkboxes("glass", [fields.option("Break the glass", "yes", "Access at once; security told")]),
                optional=True,
            ),
            fields.input_block("duration", "Duration", fields.text_input("duration", initial="30m")),
        ],
    }


def test_a_modal_is_a_box_with_its_fields_values_hints_errors_and_buttons() -> None:
    shown = modal(_form(), NAMES, errors={"reason": "The reason must mention a reference matching (INC|CHG)-[0-9]+."})
    assert all(width(row) == 76 for row in shown)
    body = "\n".join(shown)
    assert "│ Request access" in shown[1] and "✕ │" in shown[1]
    assert "│ [ orders-db ▾ ] " in body and "│   choices: orders-db · payments-admin " in body
    assert "│ What broke, and the ticket" in body  # the placeholder, inside a taller field
    assert "  Must mention a reference matching (INC|CHG)-[0-9]+" in body
    assert "⚠ The reason must mention a reference" in body
    assert "Emergency (optional)" in body and "[ ] Break the glass" in body and "    Access at once" in body
    assert "[ 30m " in body and "[ Cancel ]  [ Request ] │" in shown[-2]
    coloured = modal(_form(), NAMES, colour=True)
    assert all(width(row) == 76 for row in coloured) and any("\033[" in row for row in coloured)


def test_a_home_tab_is_a_box_of_sections_context_dividers_and_buttons() -> None:
    page = {
        "type": "home",
        "blocks": [
            fields.header("Your access"),
            fields.section(
                "*orders-db:write* · 20m left · request #4 " + "and a long tail of words " * 5,
                accessory=fields.button(ActionId.REVOKE, "Revoke now", 4, "danger"),
            ),
            fields.context("Ends <!date^1767259800^{time}|09:30 UTC>"),
            fields.divider(),
            fields.actions(fields.button(ActionId.OPEN_REQUEST_FORM, "Request access", style="primary")),
        ],
    }
    shown = home(page, NAMES)
    body = "\n".join(shown)
    assert all(width(row) == 76 for row in shown)
    assert "Breakglass · Home" in shown[1] and "YOUR ACCESS" in body and "*" not in body
    assert "[ Revoke now ]" in body and "Ends 09:30 UTC" in body and "│ " + "─" * 72 + " │" in body
    assert "[ Request access ]" in body


def test_a_message_keeps_its_labels_and_buttons_on_readable_lines() -> None:
    shown = message(
        [
            fields.header("🔐 Access request #1"),
            {
                "type": "section",
                "fields": [fields.mrkdwn("*Requester*\nBob"), fields.mrkdwn("*Resource*\n`orders-db`")],
            },
            fields.section("*Reason*\nINC-1 checkout"),
            fields.actions(
                fields.button(ActionId.APPROVE, "Approve", 1, "primary"), fields.button(ActionId.DENY, "Deny…", 1)
            ),
        ],
        NAMES,
    )
    assert shown == [
        "🔐 ACCESS REQUEST #1",
        "Requester: Bob  Resource: `orders-db`",
        "Reason: INC-1 checkout",
        "[ Approve ]  [ Deny… ]",
    ]
