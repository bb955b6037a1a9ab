"""What the audit channel reads about a drill: one message, passed or failed, each step with its time.

Rendered from the report a drill owes (``bot/services/drills.py``, ``DrillResult.to_data``). A failure calls on
``review.reviewers`` with mentions built from the policy's ids only; everything else a backend or a person wrote is
shown inert.
"""

from __future__ import annotations

from typing import Any

from bot.domain.approvals import mention
from bot.slack.text import code, escape, who

STEP_NAMES = {
    "grant": "grant",
    "verify": "verify access exists",
    "revoke": "revoke",
    "verify_gone": "verify access is gone",
    "alerts": "alerts went out",
}
DETAIL_SHOWN = 300  # characters of a step's detail (a backend's error) in the message


def seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _by(report: dict[str, Any]) -> str:
    trigger, actor = report.get("trigger"), report.get("actor") or ""
    if trigger == "schedule":
        return "on schedule"
    if trigger == "slack":
        return f"by {who(actor)} from Slack"
    return f"by {escape(actor.removeprefix('cli:'), 64)} from the CLI"


def step_line(step: dict[str, Any]) -> str:
    mark = "✅" if step.get("ok") else "❌"
    name = STEP_NAMES.get(str(step.get("name")), escape(str(step.get("name")), 40))
    detail = f" — {escape(str(step['detail']), DETAIL_SHOWN)}" if step.get("detail") else ""
    return f"{mark} {name}: {seconds(float(step.get('seconds') or 0))}{detail}"


def report(data: dict[str, Any]) -> str:
    label = code(str(data.get("label", "?")), 100)
    number = f" (request #{data['request_id']})" if data.get("request_id") else ""
    total = seconds(float(data.get("seconds") or 0))
    if data.get("passed"):
        head = f"🧪 Drill of {label} *passed* in {total}, run {_by(data)}{number}."
    else:
        head = f"🧪🚨 Drill of {label} *failed* after {total}, run {_by(data)}{number}."
        called = [mention(entry) for entry in data.get("mentions") or []]
        if called:
            head += f" {' '.join(called[:20])}: the emergency path did not work as it should; see below."
    lines = [step_line(step) for step in data.get("steps") or []]
    tail = "Marked as a drill in the audit trail; no review is owed. (`breakglass audit export --since 1h` has it.)"
    return "\n".join([head, *lines, tail])
