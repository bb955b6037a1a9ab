"""The documentation keeps its promises: every relative link and anchor leads somewhere, the README stays short and
keeps the newcomer's two commands, the manifest's usage hint lists every subcommand, and what the README says about
metrics, Heroku's database URL and the license holds for the code."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").rglob("*.md")), ROOT / "bench" / "README.md"]

_FENCE = re.compile(r"^(```|~~~)")
_HEADING = re.compile(r"^(#{1,6}) +(.+?) *#*$")
_LINK = re.compile(r"(?<!!)\[(?:[^\]`]|`[^`]*`)*\]\(([^)\s]+)\)")
_CODE_SPAN = re.compile(r"`[^`\n]*`")


def prose(path: Path) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line.lstrip()):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (word characters, '-' and spaces stay), spaces
    as '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading anchors on its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose(path):
        match = _HEADING.match(line)
        if match:
            base = slug(match.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[str]:
    """The targets of the page's links, a link whose text runs over a line break included."""
    text = _CODE_SPAN.sub("", "\n".join(prose(path)))
    return [match.group(1) for match in _LINK.finditer(text)]


def broken_links(path: Path, root: Path = ROOT) -> list[str]:
    problems = []
    for target in links(path):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...: not ours to check offline
            continue
        where, _, fragment = target.partition("#")
        page = (path.parent / where).resolve() if where else path
        if not page.exists():
            problems.append(f"{path.relative_to(root)}: {target}: no such file")
        elif fragment and page.suffix == ".md" and fragment not in anchors(page):
            problems.append(f"{path.relative_to(root)}: {target}: no heading with that anchor in {page.name}")
    return problems


def test_every_relative_link_and_anchor_in_the_docs_leads_somewhere() -> None:
    problems = [problem for page in PAGES if page.exists() for problem in broken_links(page)]
    assert problems == []


def test_the_link_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# Here it is\n\n```sh\n# not a heading\n```\n")
    page = tmp_path / "page.md"
    page.write_text(
        "[ok](there.md#here-it-is) [gone](missing.md) [no anchor](there.md#not-a-heading) [web](https://example.com)\n"
        "`[in code](nowhere.md)` [over a line\nbreak](away.md)\n"
    )
    assert broken_links(page, root=tmp_path) == [
        "page.md: missing.md: no such file",
        "page.md: there.md#not-a-heading: no heading with that anchor in there.md",
        "page.md: away.md: no such file",
    ]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Try it: two commands", "try-it-two-commands"),
        ("The audit trail: verify, stream, back up, keep", "the-audit-trail-verify-stream-back-up-keep"),
        ("Heroku with Heroku Postgres", "heroku-with-heroku-postgres"),
        ("Adapter `postgres` (v2)", "adapter-postgres-v2"),
        ("The outbox: no message lost, none sent twice", "the-outbox-no-message-lost-none-sent-twice"),
    ],
)
def test_anchors_are_made_as_github_makes_them(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_the_readme_stays_short_and_has_contents_for_every_section() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 600
    contents = "\n".join(lines[:40])
    sections = [slug(m.group(2)) for line in prose(README) if (m := _HEADING.match(line)) and m.group(1) == "##"]
    missing = [s for s in sections if s != "contents" and f"(#{s})" not in contents]
    assert missing == []


def test_the_readme_keeps_the_newcomers_two_commands_first() -> None:
    text = README.read_text(encoding="utf-8")
    demo = "pip install . && breakglass demo"
    tests = "pip install '.[test]' && bash .ci/test"
    assert demo in text and tests in text
    assert text.index(demo) < text.index("## Deploy it")
    assert (ROOT / ".ci" / "test").exists()


def _usage_hint() -> str:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text(encoding="utf-8"))
    (command,) = manifest["features"]["slash_commands"]
    return str(command["usage_hint"])


def test_the_manifests_usage_hint_lists_every_subcommand_within_slacks_limit() -> None:
    from bot.domain.commands import Ask, CommandError, parse
    from bot.policy.model import RESERVED_NAMES  # the words a resource may not be called: the subcommands

    hint = _usage_hint()
    assert len(hint) <= 1000  # the manifest schema's maxLength for usage_hint
    forms = [form.strip() for form in hint.split("|")]
    named = {form.split()[0] for form in forms}
    assert named >= RESERVED_NAMES, f"missing from the usage hint: {sorted(RESERVED_NAMES - named)}"
    for word in RESERVED_NAMES:  # each is a subcommand to the parser, not a resource someone asks for
        try:
            parsed = parse(f"{word} 1 x")
        except CommandError:
            continue  # refused with its own usage: a subcommand all the same
        assert not isinstance(parsed, Ask), word


def test_the_manifest_turns_on_what_the_bot_listens_for() -> None:
    """The Home tab, its event and the shortcut are switched on in Slack, under the ids the listeners register."""
    from bot.slack.ids import CallbackId

    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text(encoding="utf-8"))
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
    assert manifest["settings"]["event_subscriptions"]["bot_events"] == ["app_home_opened"]
    (shortcut,) = manifest["features"]["shortcuts"]
    assert shortcut["type"] == "global" and shortcut["callback_id"] == CallbackId.REQUEST_SHORTCUT.value
    urls = [
        manifest["features"]["slash_commands"][0]["url"],
        manifest["settings"]["event_subscriptions"]["request_url"],
        manifest["settings"]["interactivity"]["request_url"],
    ]
    assert len(set(urls)) == 1 and urls[0].endswith("/slack/events")  # one endpoint: bot/web.py serves only it


def test_every_metric_the_readme_names_is_one_the_bot_exports() -> None:
    text = README.read_text(encoding="utf-8")
    # Every series is breakglass_<what>_<unit or kind>; a bare breakglass_<word> is a name in an example policy.
    named = set(re.findall(r"\bbreakglass_[a-z]+_[a-z_]+\b", text))
    assert len(named) >= 10
    source = "\n".join(path.read_text(encoding="utf-8") for path in (ROOT / "bot").rglob("*.py"))
    # prometheus_client adds _total to a counter's name; the others are exported as written
    missing = sorted(n for n in named if f'"{n}"' not in source and f'"{n.removesuffix("_total")}"' not in source)
    assert missing == []


def test_the_alert_rules_in_the_docs_are_a_valid_rules_file() -> None:
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(groups:.*?)```", text, re.S)
    assert len(blocks) == 1
    rules = yaml.safe_load(blocks[0])["groups"][0]["rules"]
    names = {rule["alert"] for rule in rules}
    assert {"BreakglassRevokeFailing", "BreakglassDrillStale", "BreakglassReviewsOverdue"} <= names
    assert all(rule["expr"] and rule["annotations"]["summary"] for rule in rules)


def test_herokus_postgres_url_is_taken_as_it_comes() -> None:
    from bot.store.db import make_engine

    url = "postgres://user:secret@db.example.com:5432/d1"  # the form Heroku Postgres sets DATABASE_URL to
    engine = make_engine(url)
    try:
        assert engine.dialect.name == "postgresql" and engine.dialect.driver == "psycopg"
    finally:
        engine.dispose()


def test_the_license_pyproject_names_is_there() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == {"text": "Apache-2.0"}
    text = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text
    assert "Copyright [yyyy] [name of copyright owner]" in text  # the standard text, with no one else's name
