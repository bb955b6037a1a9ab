"""Block Kit pieces that forms and pages are built from: text objects, buttons, selects, inputs.

Pure and small, so every surface (a message, a modal, the Home tab) builds the same element the same way. Text
passed as ``plain`` is shown as typed (Slack renders no markup in it); text passed as ``mrkdwn`` must already be
made inert with ``bot/slack/text.py`` wherever it holds something the bot did not write.
"""

from __future__ import annotations

from typing import Any

from bot.slack.ids import ActionId
from bot.slack.text import units

Block = dict[str, Any]

# Slack's limits (https://api.slack.com/reference/block-kit/composition-objects, .../block-kit/block-elements):
MAX_PLAIN_OPTION = 75  # characters of an option's text, and of a button's label
MAX_OPTION_VALUE = 150
MAX_OPTIONS = 100  # options of one static select
MAX_LABEL = 2000  # an input block's label (hint likewise)
MAX_PLACEHOLDER = 150
MAX_SECTION = 3000  # characters of a section's text


def _cut(text: str, limit: int) -> str:
    """``text`` within ``limit`` UTF-16 units, cut with "…" (Slack counts in UTF-16 units)."""
    if units(text) <= limit:
        return text
    out, used = [], 0
    for char in text:
        size = units(char)
        if used + size > limit - 1:
            break
        out.append(char)
        used += size
    return "".join(out) + "…"


def plain(text: str, limit: int = 3000) -> Block:
    return {"type": "plain_text", "text": _cut(text, limit), "emoji": True}


def mrkdwn(text: str) -> Block:
    # verbatim: Slack links nothing by itself (typed URLs, #channel names, @names); only the bot's own <…> count.
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def section(text: str, accessory: Block | None = None, block_id: str | None = None) -> Block:
    block: Block = {"type": "section", "text": mrkdwn(text)}
    if accessory is not None:
        block["accessory"] = accessory
    if block_id is not None:
        block["block_id"] = block_id
    return block


def context(text: str) -> Block:
    return {"type": "context", "elements": [mrkdwn(text)]}


def header(text: str) -> Block:
    return {"type": "header", "text": plain(text, 150)}


def divider() -> Block:
    return {"type": "divider"}


def button(action: ActionId, label: str, value: str | int = "", style: str | None = None) -> Block:
    """A button; ``value`` (a request id, for most) is all a click carries back, and is never trusted beyond that."""
    element: Block = {"type": "button", "action_id": action.value, "text": plain(label, MAX_PLAIN_OPTION)}
    if value != "":
        element["value"] = str(value)
    if style:
        element["style"] = style
    return element


def actions(*elements: Block, block_id: str | None = None) -> Block:
    block: Block = {"type": "actions", "elements": list(elements)}
    if block_id is not None:
        block["block_id"] = block_id
    return block


def option(text: str, value: str, description: str | None = None) -> Block:
    made: Block = {"text": plain(text, MAX_PLAIN_OPTION), "value": value[:MAX_OPTION_VALUE]}
    if description:
        made["description"] = plain(description, MAX_PLAIN_OPTION)
    return made


def static_select(
    action: ActionId | str, options: list[Block], initial: Block | None = None, placeholder: str | None = None
) -> Block:
    element: Block = {"type": "static_select", "action_id": str(action), "options": options[:MAX_OPTIONS]}
    if initial is not None:
        element["initial_option"] = initial
    if placeholder:
        element["placeholder"] = plain(placeholder, MAX_PLACEHOLDER)
    return element


def text_input(
    action: str,
    *,
    multiline: bool = False,
    max_length: int | None = None,
    placeholder: str | None = None,
    initial: str | None = None,
) -> Block:
    element: Block = {"type": "plain_text_input", "action_id": action, "multiline": multiline}
    if max_length is not None:
        element["max_length"] = max_length
    if placeholder:
        element["placeholder"] = plain(placeholder, MAX_PLACEHOLDER)
    if initial:
        element["initial_value"] = initial
    return element


def checkboxes(action: str, options: list[Block], initial: list[Block] | None = None) -> Block:
    element: Block = {"type": "checkboxes", "action_id": action, "options": options}
    if initial:
        element["initial_options"] = initial
    return element


def input_block(
    block_id: str,
    label: str,
    element: Block,
    *,
    hint: str | None = None,
    optional: bool = False,
    dispatch_action: bool = False,
) -> Block:
    """An input in a modal. ``dispatch_action``: a choice in it is sent at once (a ``block_actions``), so the form
    can be redrawn for it before it is submitted."""
    block: Block = {
        "type": "input",
        "block_id": block_id,
        "label": plain(label, MAX_LABEL),
        "element": element,
        "optional": optional,
    }
    if hint:
        block["hint"] = plain(hint, MAX_LABEL)
    if dispatch_action:
        block["dispatch_action"] = True
    return block


def sections(text: str, limit: int = MAX_SECTION) -> list[Block]:
    """``text`` (mrkdwn, already inert) as the sections it takes to show it whole: cut between lines, and within a
    line only when one line alone is longer than a section holds."""
    chunks: list[str] = []
    current = ""
    for line in text.split("\n"):
        while units(line) > limit:  # rare: the notices and the packet bound every line they show
            head = _cut(line, limit + 1)[:-1]  # as much as fits, without the "…"
            chunks += [current, head] if current else [head]
            current, line = "", line[len(head) :]
        joined = f"{current}\n{line}" if current else line
        if current and units(joined) > limit:
            chunks.append(current)
            joined = line
        current = joined
    chunks.append(current)
    return [section(chunk) for chunk in chunks if chunk.strip()]
