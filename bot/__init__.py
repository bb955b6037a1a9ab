"""Breakglass: just-in-time and emergency access to production, from Slack."""

__version__ = "0.1.0"
