"""Where audit events are streamed to (the policy's ``audit_sinks:``): a signed webhook, syslog, a JSON-lines file.

Each sink is built from its policy entry and the environment (``build``) and sends a batch of events, each shaped as
`breakglass audit export` writes it, in chain order; ``send`` returning is the sink's confirmation, and any failure is
``SinkDown``. The shipper (bot/services/streaming.py) decides what to send and moves the cursor.
"""

from bot.sinks.base import Sink, SinkDown, build, build_all

__all__ = ["Sink", "SinkDown", "build", "build_all"]
