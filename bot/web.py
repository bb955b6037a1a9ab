"""The HTTP face: Slack's events endpoint and a health check, as one WSGI app served by waitress."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from sqlalchemy import text

from bot.store.db import Database

EVENTS_PATH = "/slack/events"


class WebApp:
    def __init__(self, app: App, db: Database) -> None:
        self.slack = SlackRequestHandler(app, path=EVENTS_PATH)
        self.db = db

    def healthy(self) -> bool:
        try:
            with self.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz" and environ.get("REQUEST_METHOD") in ("GET", "HEAD"):
            ok = self.healthy()
            body = json.dumps({"ok": ok, "database": "up" if ok else "down"}).encode()
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        return self.slack(environ, start_response)
