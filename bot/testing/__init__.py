"""Helpers for testing Breakglass and its adapters; needs pytest (the ``test`` extra)."""
