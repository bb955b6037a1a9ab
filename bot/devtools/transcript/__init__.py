"""Slack as a person sees it, in a terminal: for the demo's transcript and for reading test failures.

``text`` and ``message`` render what the bot posts (mrkdwn as formatting, never raw markers); ``modal`` and ``home``
lay out a form and the Home tab in a box; ``use_colour`` decides whether ANSI styles are wanted at all.
"""

from bot.devtools.transcript.mrkdwn import Line, Mark, Run, lines
from bot.devtools.transcript.paint import paint, use_colour, width, wrap
from bot.devtools.transcript.views import home, message, modal, text

__all__ = ["Line", "Mark", "Run", "home", "lines", "message", "modal", "paint", "text", "use_colour", "width", "wrap"]
