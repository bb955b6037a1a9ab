"""Block Kit as a person sees it: messages as lines, modals and the Home tab laid out in a box.

Pure functions from the payload the bot sent Slack (blocks, a view) to terminal lines. Inputs show their label, the
value they hold (or their placeholder, dimmed), their hint and any error Slack would show under them; selects read
``[ orders-db ▾ ]`` with the choices after them, checkboxes ``[x]`` / ``[ ]``, buttons ``[ Revoke now ]``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from bot.devtools.transcript.mrkdwn import Line, Mark, Run, lines
from bot.devtools.transcript.paint import line_width, paint, wrap

Block = Mapping[str, Any]
State = Mapping[str, Mapping[str, Any]]  # a view's ``state.values``: block id -> action id -> what the input holds
WIDTH = 76  # columns of a box, border included: with the demo's indent, a transcript fits 80 columns
_SELECTS = ("static_select", "external_select", "users_select", "conversations_select", "channels_select")
DIM = frozenset({Mark.DIM})
BOLD = frozenset({Mark.BOLD})


def text_of(obj: Block | None, names: Mapping[str, str], marks: frozenset[Mark] = frozenset()) -> list[Line]:
    """A text object: mrkdwn parsed as Slack parses it, plain_text shown as typed."""
    if not obj:
        return []
    if obj.get("type") == "plain_text":
        return [[Run(row, marks)] if row else [] for row in str(obj.get("text", "")).split("\n")]
    return lines(str(obj.get("text", "")), names, marks)


def _flat(obj: Block | None) -> str:
    """A plain_text object's words, for labels that sit inside brackets."""
    return " ".join(str((obj or {}).get("text", "")).split())


def _options(element: Block) -> list[Block]:
    found = list(element.get("options") or [])
    for group in element.get("option_groups") or []:
        found += group.get("options") or []
    return found


def element_lines(element: Block, names: Mapping[str, str], room: int = WIDTH) -> list[Line]:
    """An interactive element as it sits on the page, at most ``room`` columns wide where it stretches."""
    kind = element.get("type")
    if kind == "button":
        marks = BOLD if element.get("style") == "primary" else frozenset()
        return [[Run(f"[ {_flat(element.get('text'))} ]", marks)]]
    if kind == "overflow":
        return [[Run("[ ⋯ ]")]]
    if kind in _SELECTS or kind == "multi_static_select":
        return _select(element)
    if kind in ("plain_text_input", "number_input", "email_text_input", "url_text_input"):
        return _text_input(element, room)
    if kind in ("checkboxes", "radio_buttons"):
        return _choices(element, names)
    if kind in ("datepicker", "timepicker", "datetimepicker"):
        value = element.get("initial_date") or element.get("initial_time") or element.get("initial_date_time")
        shown = [Run(str(value))] if value else [Run(_flat(element.get("placeholder")) or "pick", DIM)]
        return [[Run("[ "), *shown, Run(" 📅 ]")]]
    return [[Run(f"[ {kind} ]", DIM)]]


def _select(element: Block) -> list[Line]:
    """The select as it sits closed, then (indented, dimmed) the choices it opens to."""
    chosen = element.get("initial_options") or ([element["initial_option"]] if element.get("initial_option") else [])
    if chosen:
        shown = [Run(", ".join(_flat(option.get("text")) for option in chosen))]
    else:
        shown = [Run(_flat(element.get("placeholder")) or "Choose…", DIM)]
    rows = [[Run("[ "), *shown, Run(" ▾ ]")]]
    others = [_flat(option.get("text")) for option in _options(element)]
    if others:
        rows.append([Run("  "), Run("choices: " + " · ".join(others), DIM)])
    return rows


def _text_input(element: Block, room: int) -> list[Line]:
    value = element.get("initial_value")
    shown = [Run(str(value))] if value else [Run(_flat(element.get("placeholder")), DIM)]
    inner = max(room - 4, 10)
    if not element.get("multiline"):
        pad = max(inner - line_width(shown), 0)
        return [[Run("[ "), *shown, Run(" " * pad + " ]")]]
    body = [*wrap(shown, inner), []]  # a multi-line field is drawn taller than its text, as Slack draws it
    framed = [[Run("┌" + "─" * (inner + 2) + "┐")]]
    framed += [[Run("│ "), *row, Run(" " * (inner - line_width(row)) + " │")] for row in body]
    return [*framed, [Run("└" + "─" * (inner + 2) + "┘")]]


def _choices(element: Block, names: Mapping[str, str]) -> list[Line]:
    picked = {option.get("value") for option in element.get("initial_options") or []}
    if element.get("initial_option"):
        picked.add(element["initial_option"].get("value"))
    boxes = ("[x] ", "[ ] ") if element.get("type") == "checkboxes" else ("(•) ", "( ) ")
    out: list[Line] = []
    for option in _options(element):
        mark = boxes[0] if option.get("value") in picked else boxes[1]
        label = text_of(option.get("text"), names) or [[]]
        out.append([Run(mark), *label[0]])
        out += [[Run("    "), *row] for row in label[1:]]
        for row in text_of(option.get("description"), names, DIM):
            out.append([Run("    "), *row])
    return out


def block_lines(
    block: Block,
    names: Mapping[str, str],
    errors: Mapping[str, str] | None = None,
    room: int = WIDTH,
    state: State | None = None,
) -> list[Line]:
    """One block as lines of runs."""
    kind = block.get("type")
    if kind == "header":
        return [[Run(_flat(block.get("text")).upper(), BOLD)]]
    if kind == "divider":
        return [[Run("─" * room, DIM)]]
    if kind == "section":
        return _section(block, names, room)
    if kind == "context":
        row: Line = []
        for element in block.get("elements", []):
            if element.get("type") in ("mrkdwn", "plain_text"):
                found = text_of(element, names, DIM)
                row += [run for part in _joined(found) for run in part] + [Run("  ", DIM)]
        return [row[:-1]] if row else []
    if kind == "actions":
        row = []
        for element in block.get("elements", []):
            row += [*element_lines(element, names, room)[0], Run("  ")]
        return [row[:-1]]
    if kind == "input":
        return _input(block, names, errors or {}, state or {}, room)
    if kind == "image":
        return [[Run(f"[image: {block.get('alt_text', '')}]", DIM)]]
    return [[Run(f"[{kind}]", DIM)]]


def _joined(found: list[Line]) -> list[Line]:
    """Lines of a context element run on, as Slack lays a context out small and dense."""
    out: list[Line] = []
    for index, row in enumerate(found):
        out.append(([Run(" ", DIM)] if index else []) + row)
    return out


def _section(block: Block, names: Mapping[str, str], room: int) -> list[Line]:
    out: list[Line] = []
    fields = block.get("fields") or []
    if fields:
        row: Line = []
        for field in fields:
            row += [run for part in _labelled(text_of(field, names)) for run in part] + [Run("  ")]
        out.append(row[:-1])
    out += _labelled(text_of(block.get("text"), names))
    accessory = block.get("accessory")
    if accessory and accessory.get("type") != "image":
        shown = element_lines(accessory, names, room)
        if out and len(shown) == 1:
            out[-1] = [*out[-1], Run("  "), *shown[0]]
        else:
            out += shown
    return out


def _labelled(found: list[Line]) -> list[Line]:
    """A first line that is only a bold label (``*Reason*``) runs on with a colon, as a form field reads."""
    if len(found) > 1 and found[0] and all(Mark.BOLD in run.marks for run in found[0]):
        return [[*found[0], Run(": "), *found[1]], *found[2:]]
    return found


def _holding(element: Block, held: Mapping[str, Any] | None) -> Block:
    """``element`` showing what the person put in it (``held``: its part of a view's ``state.values``)."""
    if not held:
        return element
    shown = dict(element)
    by_value = {option.get("value"): option for option in _options(element)}
    if "value" in held:
        shown["initial_value"] = held["value"]
    if "selected_option" in held:
        picked = held["selected_option"] or {}
        shown["initial_option"] = by_value.get(picked.get("value")) or picked or None
    if "selected_options" in held:
        shown["initial_options"] = [by_value.get(o.get("value"), o) for o in held["selected_options"] or []]
    return shown


def _input(block: Block, names: Mapping[str, str], errors: Mapping[str, str], state: State, room: int) -> list[Line]:
    label: Line = [Run(_flat(block.get("label")), BOLD)]
    if block.get("optional"):
        label.append(Run(" (optional)", DIM))
    element = block.get("element") or {}
    held = state.get(str(block.get("block_id")), {}).get(str(element.get("action_id")))
    out = [label, *element_lines(_holding(element, held), names, room)]
    out += [[Run("  "), *row] for row in text_of(block.get("hint"), names, DIM)]
    error = errors.get(str(block.get("block_id")))
    if error:
        out.append([Run("⚠ " + " ".join(error.split()), BOLD)])
    return out


# -- what the demo prints ---------------------------------------------------------------------------------------


def text(mrkdwn: str, names: Mapping[str, str], colour: bool = False) -> str:
    """A message's mrkdwn as terminal text, line by line."""
    return "\n".join(paint(row, colour) for row in lines(mrkdwn, names))


def message(blocks: Iterable[Block], names: Mapping[str, str], colour: bool = False) -> list[str]:
    """A message's blocks as terminal lines (the terminal wraps them)."""
    return [paint(row, colour) for block in blocks for row in block_lines(block, names, room=40)]


def modal(
    view: Block,
    names: Mapping[str, str],
    colour: bool = False,
    errors: Mapping[str, str] | None = None,
    width: int = WIDTH,
    state: State | None = None,
) -> list[str]:
    """A modal in a box: its title, its blocks (inputs spaced apart, each error under its field), its buttons.
    ``state``: what the person has put in its inputs (as Slack sends it), shown instead of their initial values."""
    inner = width - 4
    title: Line = [Run(_flat(view.get("title")), BOLD)]
    title.append(Run(" " * max(inner - line_width(title) - 1, 1) + "✕", DIM))
    buttons: Line = []
    if view.get("close"):
        buttons += [Run(f"[ {_flat(view['close'])} ]"), Run("  ")]
    if view.get("submit"):
        buttons.append(Run(f"[ {_flat(view['submit'])} ]", BOLD))
    footer = [Run(" " * max(inner - line_width(buttons), 0)), *buttons] if buttons else []
    body = _body(view.get("blocks") or [], names, errors, inner, state)
    return _boxed([[title]], body, [[footer]] if footer else [], inner, colour)


def home(view: Block, names: Mapping[str, str], colour: bool = False, width: int = WIDTH) -> list[str]:
    """The Home tab in a box, under the app's name."""
    inner = width - 4
    heading: Line = [Run("Breakglass", BOLD), Run(" · Home", DIM)]
    return _boxed([[heading]], _body(view.get("blocks") or [], names, None, inner, None), [], inner, colour)


def _body(
    blocks: Iterable[Block],
    names: Mapping[str, str],
    errors: Mapping[str, str] | None,
    inner: int,
    state: State | None,
) -> list[Line]:
    out: list[Line] = []
    for block in blocks:
        spaced = block.get("type") in ("input", "header") or (block.get("type") == "actions" and out)
        if spaced and out and out[-1]:
            out.append([])  # Slack leaves room above a field, a heading and a row of buttons
        for row in block_lines(block, names, errors, inner, state):
            out += wrap(row, inner) if row else [[]]
    return out


def _boxed(head: list[list[Line]], body: list[Line], foot: list[list[Line]], inner: int, colour: bool) -> list[str]:
    def framed(row: Line) -> str:
        return f"│ {paint(row, colour)}{' ' * max(inner - line_width(row), 0)} │"

    rule = "─" * (inner + 2)
    out = [f"┌{rule}┐"]
    for part in head:
        out += [framed(row) for row in part]
        out.append(f"├{rule}┤")
    out += [framed(row) for row in body or [[]]]
    for part in foot:
        out.append(f"├{rule}┤")
        out += [framed(row) for row in part]
    out.append(f"└{rule}┘")
    return out
