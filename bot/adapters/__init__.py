"""Backends that turn a decision into access on a real system, and take it back."""
