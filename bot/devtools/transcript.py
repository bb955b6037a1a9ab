"""Slack messages as plain terminal text, for the demo and for reading test failures."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_MENTION = re.compile(r"<@([A-Z0-9]+)>")
_GROUP = re.compile(r"<!subteam\^([A-Z0-9]+)(?:\|[^>]*)?>")
_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]*)>")
_DATE = re.compile(r"<!date\^\d+\^[^|>]*\|([^>]*)>")


def plain(text: str, names: Mapping[str, str]) -> str:
    """mrkdwn to terminal text: mentions become @name (a group's name as ``names`` spells it, with its @), links
    their label and address, dates their UTC fallback, entities decoded."""
    text = _MENTION.sub(lambda m: "@" + names.get(m.group(1), m.group(1)), text)
    text = _GROUP.sub(lambda m: names.get(m.group(1), "@" + m.group(1)), text)
    text = _LINK.sub(lambda m: f"{m.group(2)} → {m.group(1)}", text)
    text = _DATE.sub(lambda m: m.group(1), text)
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def render_blocks(blocks: list[dict[str, Any]], names: Mapping[str, str]) -> list[str]:
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            lines.append(block["text"]["text"].upper())
        elif kind == "section":
            if "fields" in block:
                lines.append("  ".join(plain(f["text"], names).replace("\n", ": ") for f in block["fields"]))
            if "text" in block:
                lines.append(plain(block["text"]["text"], names).replace("\n", ": ", 1))
        elif kind == "context":
            lines += [plain(e.get("text", ""), names) for e in block.get("elements", [])]
        elif kind == "actions":
            lines.append("  ".join(f"[ {e['text']['text']} ]" for e in block.get("elements", [])))
    return lines
