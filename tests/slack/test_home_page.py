"""The Home tab builder: a pure function from a page to a view that Slack takes however full the page, with every
text someone typed inert."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.devtools.slack_standin import MAX_SECTION_TEXT, MAX_VIEW_BLOCKS, view_problem
from bot.domain.states import Status
from bot.services.home import SHOWN, Page, Section
from bot.services.snapshots import RequestView, ReviewView
from bot.slack.home import home_view
from bot.slack.ids import ActionId

AT = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
HOSTILE = "<!here> <@U0EVIL> *bold* `code` ```fence``` &amp; \u202e" + "🔥" * 2000


def item(number: int, status: Status, reason: str = HOSTILE, resource: str = "orders-db" + "x" * 50) -> RequestView:
    return RequestView(
        id=number,
        uid=f"uid-{number}",
        resource=resource,
        requester_id="U0BOB",
        reason=reason,
        duration=timedelta(hours=1),
        emergency=number % 2 == 0,
        status=status,
        created_at=AT,
        approvals_required=2,
        granted_at=AT,
        expires_at=AT + timedelta(minutes=30),
        ended_at=AT,
        level="admin" * 6,
        review=ReviewView("written", None, None, None, 0, "U0BOB", AT, HOSTILE),
    )


def full(total: int, status: Status, reason: str = HOSTILE) -> Section:
    return Section(tuple(item(n, status, reason) for n in range(1, min(total, SHOWN) + 1)), total)


def page(total: int, reason: str = HOSTILE, first_visit: bool = False) -> Page:
    return Page(
        user_id="U0CAROL",
        now=AT + timedelta(minutes=4, seconds=1),
        grants=full(total, Status.ACTIVE, reason),
        pending=full(total, Status.PENDING, reason),
        to_decide=full(total, Status.PENDING, reason),
        reviews_owed=full(total, Status.EXPIRED, reason),
        to_sign_off=full(total, Status.EXPIRED, reason),
        first_visit=first_visit,
    )


def texts(view: dict) -> list[str]:
    found = []
    for block in view["blocks"]:
        for text in [block.get("text"), *(block.get("elements") or []), block.get("accessory")]:
            if isinstance(text, dict) and isinstance(text.get("text"), str):
                found.append(text["text"])
            elif isinstance(text, dict) and isinstance(text.get("text"), dict):
                found.append(text["text"]["text"])
    return found


def test_a_full_page_fits_slacks_limits_and_says_how_many_there_are() -> None:
    view = home_view(page(5000, first_visit=True))

    assert view["type"] == "home" and view_problem(view) is None and len(view["blocks"]) <= MAX_VIEW_BLOCKS
    shown = "\n".join(texts(view))
    assert shown.count("Showing 10 of 5000, the most urgent first.") == 5
    assert "<!here>" not in shown and "<@U0EVIL>" not in shown and "```" not in shown and "\u202e" not in shown
    assert "*26m left*" in shown  # 25m59s, rounded up to whole minutes


def test_an_empty_page_says_so_and_how_to_ask() -> None:
    view = home_view(page(0))

    shown = "\n".join(texts(view))
    assert "Press *Request access*" in shown and "No access right now." in shown and "None owed." in shown
    assert [b["elements"][0]["action_id"] for b in view["blocks"] if b["type"] == "actions"] == [
        ActionId.OPEN_REQUEST_FORM
    ]


@settings(max_examples=50, deadline=None)
@given(st.integers(min_value=0, max_value=10_000), st.text(max_size=3000))
def test_any_page_is_one_slack_takes(total: int, reason: str) -> None:
    view = home_view(replace(page(total, reason), first_visit=total % 2 == 0))

    assert view_problem(view) is None and len(view["blocks"]) <= MAX_VIEW_BLOCKS
    assert all(len(text) <= MAX_SECTION_TEXT for text in texts(view))
