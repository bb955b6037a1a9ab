"""What the audit channel reads when the policy file is reloaded: one message, taken or refused.

Rendered from the report a reload owes (``bot/services/policy_reload.py``, ``Outcome.to_data``): resource names as
the file has them, and a refusal's problems as ``key.path: what was expected``, shown inert (a file's text is not
ours to ping anyone with).
"""

from __future__ import annotations

from typing import Any

from bot.slack.text import escape

PROBLEMS_SHOWN = 10  # the first of a refusal's problems; `breakglass policy lint` lists them all


def _names(names: list[str]) -> str:
    return ", ".join(f"`{escape(name, 64)}`" for name in names)


def report(data: dict[str, Any]) -> str:
    source = escape(str(data.get("source") or "the policy file"), 200)
    version = str(data.get("version") or "")[:12]
    if data.get("outcome") == "refused":
        problems = [str(p) for p in data.get("problems") or []]
        said = f"{source} has {len(problems)} problem(s); the policy in force is unchanged"
        lines = [f"⛔ Policy reload refused: {said}."]
        lines += [f"• {escape(problem, 300)}" for problem in problems[:PROBLEMS_SHOWN]]
        if len(problems) > PROBLEMS_SHOWN:
            lines.append(f"… and {len(problems) - PROBLEMS_SHOWN} more: `breakglass policy lint {source}` lists them.")
        return "\n".join(lines)
    changes = []
    for key, said in (("added", "added"), ("removed", "removed"), ("changed", "changed")):
        if data.get(key):
            changes.append(f"{said} {_names(list(data[key]))}")
    if data.get("settings"):
        changes.append(f"top-level {', '.join(escape(str(s), 40) for s in data['settings'])} changed")
    what = "; ".join(changes) if changes else "no resource changed"
    return (
        f"🔄 Policy reloaded from {source} (version `{version}`): {what}. New requests follow it; live grants keep "
        "the rules they were granted under."
    )
