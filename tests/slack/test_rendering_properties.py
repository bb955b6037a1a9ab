"""Text other people wrote, rendered into the bot's messages, can neither ping, link, nor break the layout.

Every renderer that puts such text into a message is fed hostile values: Slack's mention, link and date syntax,
entities, mrkdwn markers, code fences, every Unicode category, control characters, and text thousands of
characters long. What is held:

- the message is JSON that Slack accepts: every block and element within Slack's documented limits, counted in
  UTF-16 units (the strictest way Slack may count);
- every <…> control sequence in the output is one the bot wrote: the same set appears when each piece of
  user text is replaced by a benign word, and no raw & < > from user text survives;
- the layout is the bot's: the output is the benign rendering with each piece of user text replaced by inert
  text of the right shape (one line; or quoted lines for adapter instructions; no backtick inside the bot's own
  code spans), and user text is last on its line, so a stray * _ ~ has nothing of the bot's to pair with.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.domain.states import Status
from bot.policy import parse_policy
from bot.services.ports import Notice
from bot.services.requests import Offer
from bot.services.snapshots import DecisionView, RequestView, ReviewView
from bot.slack import blocks, notices, thread_replies
from bot.slack.text import code, escape, placeholders, quote, secret, who

EXAMPLES = settings(max_examples=100, deadline=None, database=None)

# Slack's documented limits (api.slack.com/reference/block-kit): 50 blocks a message; a text object 1 to 3000
# characters; section text 3000, section fields at most 10 of 2000; context at most 10 elements (held to 2000
# here, stricter than the 3000 of any text object); header plain_text 150; actions at most 25 elements; button
# text 75, value 2000, action_id and block_id 255; a message's text is cut at 40,000.
MAX_BLOCKS = 50
MAX_MESSAGE_TEXT = 40_000


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def slack_problems(text: str | None, message_blocks: list[dict[str, Any]] | None = None) -> list[str]:
    """What Slack would refuse (or cut) in a message; empty when it fits every documented limit."""
    problems: list[str] = []
    payload = {"text": text, "blocks": message_blocks or []}
    try:
        json.dumps(payload, ensure_ascii=False).encode("utf-8")  # lone surrogates cannot be sent
    except (TypeError, ValueError) as error:
        return [f"not JSON Slack can take: {error}"]
    if text is not None and units(text) > MAX_MESSAGE_TEXT:
        problems.append(f"message text of {units(text)} units")
    all_blocks = message_blocks or []
    if len(all_blocks) > MAX_BLOCKS:
        problems.append(f"{len(all_blocks)} blocks")

    def text_object(obj: Any, limit: int, where: str, kinds: tuple[str, ...] = ("plain_text", "mrkdwn")) -> None:
        if not isinstance(obj, dict) or obj.get("type") not in kinds or not isinstance(obj.get("text"), str):
            problems.append(f"{where}: not a text object of {kinds}: {obj!r:.80}")
            return
        size = units(obj["text"])
        if not 1 <= size <= limit:
            problems.append(f"{where}: text of {size} units (1 to {limit})")

    for index, block in enumerate(all_blocks):
        where = f"block {index} ({block.get('type')})"
        if len(str(block.get("block_id", ""))) > 255:
            problems.append(f"{where}: block_id too long")
        kind = block.get("type")
        if kind == "header":
            text_object(block.get("text"), 150, where, ("plain_text",))
        elif kind == "section":
            if "text" in block:
                text_object(block["text"], 3000, where)
            fields = block.get("fields") or []
            if len(fields) > 10:
                problems.append(f"{where}: {len(fields)} fields")
            for field in fields:
                text_object(field, 2000, f"{where} field")
            if "text" not in block and not fields:
                problems.append(f"{where}: neither text nor fields")
        elif kind == "context":
            elements = block.get("elements") or []
            if not 1 <= len(elements) <= 10:
                problems.append(f"{where}: {len(elements)} elements")
            for element in elements:
                text_object(element, 2000, f"{where} element")
        elif kind == "actions":
            elements = block.get("elements") or []
            if not 1 <= len(elements) <= 25:
                problems.append(f"{where}: {len(elements)} elements")
            for element in elements:
                text_object(element.get("text"), 75, f"{where} button", ("plain_text",))
                if len(str(element.get("value", ""))) > 2000 or len(str(element.get("action_id", ""))) > 255:
                    problems.append(f"{where}: button value or action_id too long")
        elif kind != "divider":
            problems.append(f"{where}: a block type this bot does not use")
    return problems


def message_texts(text: str | None, message_blocks: list[dict[str, Any]] | None = None) -> Iterator[str]:
    """The message's text, then every text object's text in its blocks, in order."""
    if text is not None:
        yield text

    def walk(node: Any) -> Iterator[str]:
        if isinstance(node, dict):
            if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
                yield node["text"]
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    yield from walk(message_blocks or [])


TOKEN = re.compile(r"<[^<>]*>")
ENTITY = re.compile(r"&(?:amp|lt|gt);")
BIDI = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def raw_control_characters(text: str) -> set[str]:
    """& < > left in ``text`` besides the bot's own <…> sequences, entities and block-quote markers."""
    return set("<>&") & set(re.sub(r"(?m)^> ", "", ENTITY.sub("", TOKEN.sub("", text))))


def tokens(texts: list[str]) -> list[str]:
    return sorted(token for text in texts for token in TOKEN.findall(text))


def assert_inert(piece: str, *, one_line: bool, code_span: bool = False) -> None:
    """A rendered piece of user text: entities only, no control or bidi characters, no code break, no broadcast."""
    assert not set("<>&") & set(ENTITY.sub("", piece)), piece
    assert not [ch for ch in piece if unicodedata.category(ch) in ("Cc", "Cs") and ch != "\n"], piece
    assert not BIDI & set(piece), piece
    if one_line:
        assert "\n" not in piece, piece
    for line in piece.split("\n"):
        if code_span:
            assert "`" not in line, piece
        else:
            assert "```" not in line and line.count("`") % 2 == 0, piece
    assert not re.search(r"@(?:here|channel|everyone)\b", piece, re.IGNORECASE), piece


# -- hostile text --------------------------------------------------------------------------------------------

FRAGMENTS = [
    "<!channel>",
    "<!here>",
    "<!everyone>",
    "<@U0ALICE01>",
    "<@U0EVE|alice>",
    "<#C0SECURITY>",
    "<!subteam^S0SRELEADS>",
    "<http://evil.example|Approve>",
    "<https://evil.example>",
    "<!date^1700000000^{date}|now>",
    "@here",
    "@channel",
    "@everyone",
    "&amp;",
    "&lt;",
    "&",
    "<",
    ">",
    "> ",
    "\n> ",
    "`",
    "``",
    "```",
    "\n```\n",
    "*",
    "_",
    "~",
    "*bold*",
    "\n",
    "\r\n",
    "\r",
    "\u2028",
    "\u2029",
    "\x85",
    "\x0b",
    "\x00",
    "\x1b[2J",
    "\t",
    "\u202e",
    "\u2066",
    "\u200b",
    "\ufeff",
    "\u200d",
    "\U000e0041",
    "\ud800",
    "\U0001f525",
    "\U0001f469\u200d\U0001f4bb",
    "\u0301",
    " ",
    "INC-4211",
    '{"type":"block_actions","actions":[{"value":"1"}]}',
    "payload=%7B%7D&token=x",
]
any_character = st.characters(exclude_categories=())
fragment = st.sampled_from(FRAGMENTS)
hostile = st.one_of(
    st.lists(st.one_of(fragment, st.text(any_character, max_size=15)), min_size=1, max_size=40).map("".join),
    st.text(any_character, min_size=1, max_size=200),
    st.builds(lambda piece, n: piece * n, fragment, st.integers(min_value=1, max_value=4000)),
).filter(bool)

ALICE, CAROL, BOB = "U0ALICE01", "U0CAROL", "U0BOB"
AT = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
SENTINEL = {field: f"QQ{field}QQ" for field in ("reason", "principal", "failure", "instructions")}


def base_view(status: Status, emergency: bool, end_reason: str | None, review: str | None) -> RequestView:
    decisions = (DecisionView(ALICE, True, AT), DecisionView(CAROL, status is not Status.DENIED, AT))
    return RequestView(
        id=42,
        uid="uid-42",
        resource="orders-db",
        requester_id=BOB,
        reason=SENTINEL["reason"],
        duration=timedelta(hours=1),
        emergency=emergency,
        status=status,
        created_at=AT,
        approvals_required=2,
        decisions=decisions,
        granted_at=AT,
        expires_at=AT + timedelta(hours=1),
        ended_at=AT + timedelta(minutes=30),
        end_reason=end_reason,
        ended_by=ALICE,
        instructions=SENTINEL["instructions"],
        failure=SENTINEL["failure"],
        principal=SENTINEL["principal"],
        revoke_attempts=3,
        review=ReviewView(review, CAROL, "notes", AT, 1) if review else None,
    )


views = st.builds(
    base_view,
    st.sampled_from(list(Status)),
    st.booleans(),
    st.sampled_from([None, "grant_failed", "expired", "revoked"]),
    st.sampled_from([None, "due", "written", "done"]),
)
hostile_fields = st.fixed_dictionaries({field: hostile for field in SENTINEL})


def with_text(view: RequestView, values: dict[str, str]) -> RequestView:
    return replace(view, **values)


def assert_same_layout(template: str, rendered: str) -> None:
    """``rendered`` is ``template`` with each sentinel replaced by inert user text of the right shape."""
    pattern, holes = "", []
    position = 0
    sentinels = re.compile("|".join(re.escape(s) for s in SENTINEL.values()))
    for found in sentinels.finditer(template):
        pattern += re.escape(template[position : found.start()])
        line_rest = template[found.end() :].split("\n", 1)[0]
        in_code = template[: found.start()].endswith("`") and line_rest.startswith("`")
        multi_line = found.group() == SENTINEL["instructions"]
        if not in_code:
            # User text is last on its line: nothing of the bot's formatting follows it there.
            assert not set("*_~`") & set(line_rest), (template, line_rest)
        pattern += r"((?:[^\n]*)(?:\n> [^\n]*)*)" if multi_line else r"([^\n]*)"
        holes.append((in_code, multi_line))
        position = found.end()
    pattern += re.escape(template[position:])
    match = re.fullmatch(pattern, rendered, re.DOTALL)
    assert match is not None, f"layout changed:\n--- template\n{template}\n--- rendered\n{rendered}"
    for (in_code, multi_line), piece in zip(holes, match.groups(), strict=True):
        first, *more = piece.split("\n") if multi_line else [piece]
        assert all(line.startswith("> ") for line in more), piece
        for line in [first, *(line.removeprefix("> ") for line in more)]:
            assert_inert(line, one_line=True, code_span=in_code)


Rendered = tuple[str | None, list[dict[str, Any]] | None]


def assert_safe(render: Callable[[RequestView], Rendered], view: RequestView, values: dict[str, str]) -> None:
    benign_text, benign_blocks = render(view)
    text, message_blocks = render(with_text(view, values))
    assert slack_problems(text, message_blocks) == []
    templates, rendered = list(message_texts(benign_text, benign_blocks)), list(message_texts(text, message_blocks))
    assert len(templates) == len(rendered)
    assert tokens(rendered) == tokens(templates)
    for template, output in zip(templates, rendered, strict=True):
        assert not raw_control_characters(output), output
        assert_same_layout(template, output)


# -- the renderers -------------------------------------------------------------------------------------------


def every_state(view: RequestView) -> Iterator[RequestView]:
    for status in Status:
        for emergency in (False, True):
            yield replace(view, status=status, emergency=emergency)


@settings(max_examples=40, deadline=None, database=None)  # each example renders all 24 states
@given(views, hostile_fields)
def test_the_request_message_keeps_user_text_inert_and_within_limits(view: RequestView, values: dict[str, str]) -> None:
    for each in every_state(view):
        assert_safe(blocks.request_message, each, values)


@settings(max_examples=60, deadline=None, database=None)  # each example renders every notice
@given(views, hostile_fields)
def test_every_notice_keeps_user_text_inert(view: RequestView, values: dict[str, str]) -> None:
    # In the request's thread, with what a decider wrote (here the requester's hostile reason) as the words.
    note = {"actor": "U0ALICE01", "step": 0, "mentions": ["S0SRELEADS", "U0CAROL"], "why": "x", "schedule": "P1"}
    for notice in Notice:
        assert_safe(
            lambda v, notice=notice, note=note: (thread_replies.reply(v, notice, {**note, "words": v.reason}), None),
            view,
            values,
        )
        if notice in thread_replies.THREAD_ONLY:
            continue
        assert_safe(lambda v, notice=notice: (notices.to_channel(v, notice), None), view, values)
        try:
            notices.to_requester(view, notice)
        except KeyError:
            continue  # a notice only channels hear
        assert_safe(lambda v, notice=notice: (notices.to_requester(v, notice), None), view, values)


@EXAMPLES
@given(st.lists(st.tuples(views, hostile_fields), min_size=1, max_size=40))
def test_mine_keeps_user_text_inert_and_short_enough(entries: list[tuple[RequestView, dict[str, str]]]) -> None:
    def render(values_of: Callable[[RequestView, dict[str, str]], RequestView]) -> str:
        listed = [values_of(replace(view, id=i), values) for i, (view, values) in enumerate(entries)]
        return blocks.mine_text(listed, listed, listed, to_sign_off=listed)

    template, rendered = render(lambda view, _: view), render(with_text)
    assert slack_problems(rendered) == []
    assert tokens([rendered]) == tokens([template])
    assert_same_layout(template, rendered)


@EXAMPLES
@given(hostile, hostile)
def test_the_resource_list_keeps_operator_text_inert(description: str, pattern: str) -> None:
    policy = parse_policy(
        "channels: {approvals: C0APPROVALS, audit: C0SECURITY}\n"
        "resources:\n  orders-db: {adapter: log, approvers: [U0ALICE01], emergency: true}\n"
    )
    resource = policy.resources["orders-db"]

    def render(values: dict[str, str]) -> str:
        return blocks.offers_text([Offer(resource.model_copy(update=values), may_request=True)])

    template = render({"description": SENTINEL["reason"], "reason_pattern": SENTINEL["principal"]})
    rendered = render({"description": description, "reason_pattern": pattern})
    assert slack_problems(rendered) == []
    assert tokens([rendered]) == tokens([template]) == []
    assert_same_layout(template, rendered)


@EXAMPLES
@given(hostile.filter(lambda text: not any(0xD800 <= ord(ch) <= 0xDFFF for ch in text)))
def test_one_time_credentials_arrive_exactly_as_issued_and_inert(one_time: str) -> None:
    # Lone surrogates are left out: a secret that is not valid Unicode cannot be sent, so no rendering can help.
    view = base_view(Status.ACTIVE, False, None, None)
    rendered = notices.credentials(view, one_time)
    assert slack_problems(rendered) == []
    if len(one_time) < 5000:
        assert placeholders(one_time) in rendered  # entities are all Slack turns back: copying gives the secret
    elif placeholders(one_time) not in rendered:
        assert "too long for a Slack message" in rendered  # never a secret cut short
    assert tokens([rendered]) == tokens([notices.credentials(view, "QQsecretQQ")])
    assert not raw_control_characters(rendered)


@EXAMPLES
@given(st.one_of(hostile, st.from_regex(r"[UWBC][A-Z0-9]{0,12}", fullmatch=True)))
def test_only_user_ids_become_mentions(user_id: str) -> None:
    shown = who(user_id)
    if shown.startswith("<@"):
        assert re.fullmatch(r"<@[UW][A-Z0-9]{2,20}>", shown) and shown == f"<@{user_id}>"
    else:
        assert_inert(shown, one_line=True)


def test_help_shows_its_placeholders_as_text_not_links() -> None:
    text = blocks.help_text()
    assert tokens([text]) == []
    assert "/breakglass &lt;resource&gt;[:level] [duration] &lt;reason…&gt;" in text


# -- the rules themselves, on examples a person can read ------------------------------------------------------


def test_a_newline_cannot_escape_a_single_line_field() -> None:
    assert escape("INC-1\n*Approved by* <@U0ALICE01>\n> fine") == "INC-1 *Approved by* &lt;@U0ALICE01&gt; &gt; fine"


def test_multi_line_text_is_quoted_line_by_line() -> None:
    assert quote("psql -h db\n\n```\nrm -rf /\n> <!here>") == (
        "> psql -h db\n> \n> \u02cb\u02cb\u02cb\n> rm -rf /\n> &gt; &lt;!here&gt;"
    )


def test_backticks_survive_only_where_they_pair_up() -> None:
    assert escape("run `psql -h db` now") == "run `psql -h db` now"
    assert escape("oops ` then") == "oops \u02cb then"
    assert code("a`b") == "`a\u02cbb`"


def test_broadcast_words_are_defused_but_still_read_the_same() -> None:
    assert escape("ping @here and @Channel") == "ping @\u2060here and @\u2060Channel"


def test_limits_count_the_escaped_text_and_never_cut_an_entity() -> None:
    assert escape("&" * 5000, 100) == "&amp;" * 19 + "…"
    assert len(escape("\U0001f525" * 5000, 101)) == 51  # 50 astral characters are 100 UTF-16 units, then "…"


def test_secrets_with_backticks_keep_every_character() -> None:
    assert secret("a`b<c") == "\n```a`b&lt;c```\n"
    assert secret("plain-Secret_1") == "`plain-Secret_1`"


def test_a_cut_never_leaves_half_a_code_span() -> None:
    # Found by test_only_user_ids_become_mentions: a pair of backticks cut in the middle by the length limit.
    for text in ("`" + "a" * 50 + "`", "a" * 38 + "`b`"):
        assert escape(text, 40).count("`") % 2 == 0
        assert all(line.count("`") % 2 == 0 for line in quote(text, 30).split("\n"))
