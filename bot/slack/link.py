"""The bot's link to the Slack Web API: whether Slack answers, and which workspace the bot token belongs to.

A bot restarted during a Slack outage (or a DNS hiccup) must still revoke on time: revokes owe nothing to Slack.
So an unreachable Slack at start is one log line, not an exit; the link keeps asking ``auth.test`` in the
background and learns the workspace when Slack answers. Until the workspace is known (and SLACK_TEAM_ID does not
name it) the workspace gate refuses every request, rather than serve whichever workspace asks. A token Slack
refuses (invalid_auth and kin) is a configuration mistake no retry fixes: that stays fatal, in one line.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from slack_bolt.authorization import AuthorizeResult
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.slack.gate import Home

log = logging.getLogger("breakglass.slack")
_SDK_LOG = logging.getLogger("slack_sdk.breakglass_link")
_SDK_LOG.setLevel(logging.CRITICAL)

# Slack's answers that mean the token itself is wrong (https://api.slack.com/methods/auth.test#errors).
TOKEN_REFUSED = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired", "not_allowed_token_type"}
)


class TokenRefused(Exception):
    """Slack says the bot token is not valid; the error code is the message."""


@dataclass(frozen=True)
class Identity:
    """What ``auth.test`` says about the bot token's install."""

    home: Home
    bot_user_id: str | None
    bot_id: str | None


class SlackLink:
    """Asks ``auth.test`` at start and then in the background: quickly (``retry_first`` doubling up to
    ``retry_max`` seconds) while Slack is unreachable, every ``recheck`` seconds once it answers, so /healthz can
    say when Slack has gone away again."""

    def __init__(
        self,
        client: WebClient,
        configured: Home | None = None,
        *,
        retry_first: float = 1.0,
        retry_max: float = 30.0,
        recheck: float = 60.0,
    ) -> None:
        self.client = client
        self.configured = configured
        self.retry_first = retry_first
        self.retry_max = retry_max
        self.recheck = recheck
        self._identity: Identity | None = None
        self._reachable = False
        self._failures = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_token(cls, token: str, api_url: str, configured: Home | None = None) -> SlackLink:
        # No retry handler: the background loop is the retry, and start-up must not spend seconds on one. The SDK's
        # own logger would add a line at ERROR for every failed attempt; the link says what matters itself.
        client = WebClient(token=token, base_url=api_url, timeout=5, logger=_SDK_LOG)
        return cls(client, configured)

    # -- what is known -------------------------------------------------------------------------------------------

    @property
    def reachable(self) -> bool:
        with self._lock:
            return self._reachable

    @property
    def home(self) -> Home | None:
        """The workspace requests must come from: as configured, else as learnt; None while still unknown."""
        if self.configured is not None:
            return self.configured
        with self._lock:
            return self._identity.home if self._identity else None

    def authorize(self, enterprise_id: str | None, team_id: str | None, user_id: str | None) -> AuthorizeResult:
        """Bolt's authorization, from what the link knows: never a call to Slack in the middle of a request."""
        with self._lock:
            identity = self._identity
        return AuthorizeResult(
            enterprise_id=enterprise_id,
            team_id=team_id,
            user_id=user_id,
            bot_token=self.client.token,
            bot_user_id=identity.bot_user_id if identity else None,
            bot_id=identity.bot_id if identity else None,
        )

    # -- asking Slack --------------------------------------------------------------------------------------------

    def connect(self) -> bool:
        """The check at start: True if Slack answered. Raises TokenRefused if Slack refused the token."""
        problem = self._ask()
        if problem is None:
            return True
        if self.configured is None:
            consequence = "Slack requests are refused until Breakglass learns which workspace it serves"
        else:
            consequence = "Slack requests are served; messages to Slack wait until it is back"
        log.warning(
            "Slack is unreachable (%s); starting anyway: sweeps and revokes go on, %s, and Breakglass keeps trying",
            problem,
            consequence,
        )
        return False

    def check(self) -> bool:
        """One background check; True if Slack answered. Says so in one line each time reachability changes."""
        was = self.reachable
        try:
            problem = self._ask()
        except TokenRefused as refused:  # revoked while running: not fatal now, revokes still matter more
            problem = f"Slack refused the bot token ({refused})"
        if problem is None and not was:
            home = self.home
            serving = (home.team_id or home.enterprise_id) if home else None
            log.warning("Slack is reachable again; serving workspace %s", serving or "?")
        elif problem is not None and was:
            log.warning("Slack is unreachable (%s); Breakglass keeps trying", problem)
        return problem is None

    def _ask(self) -> str | None:
        """Ask auth.test; None if it answered, else why not. Raises TokenRefused."""
        try:
            auth = self.client.auth_test()
        except SlackApiError as error:
            code = error.response.get("error") if isinstance(error.response.data, dict) else None
            if code in TOKEN_REFUSED:
                self._lost(str(code))
                raise TokenRefused(str(code)) from None
            return self._lost(f"auth.test answered HTTP {error.response.status_code} {code or ''}".strip())
        except Exception as error:  # refused, timed out, no DNS: all mean "not now"
            return self._lost(_reason(error))
        identity = Identity(
            Home(auth.get("team_id"), auth.get("enterprise_id"), org_wide=bool(auth.get("is_enterprise_install"))),
            auth.get("user_id"),
            auth.get("bot_id"),
        )
        with self._lock:
            self._identity = identity
            self._reachable = True
            self._failures = 0
        return None

    def _lost(self, why: str) -> str:
        with self._lock:
            self._reachable = False
            self._failures += 1
        return why

    # -- the background loop -------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="slack-link", daemon=True)
            self._thread.start()

    def retry_now(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=6)  # one auth.test at most: its timeout is 5 s

    def _next_wait(self) -> float:
        with self._lock:
            if self._reachable:
                return self.recheck
            return min(self.retry_first * 2 ** max(self._failures - 1, 0), self.retry_max)

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._next_wait())
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.check()
            except Exception:  # the loop must outlive any surprise: it is how the bot finds Slack again
                log.exception("checking Slack failed")


def _reason(error: Exception) -> str:
    reason = getattr(error, "reason", None)  # urllib's URLError wraps the socket error
    shown = reason if isinstance(reason, BaseException) else error
    text = str(shown).strip().splitlines()[0][:120] if str(shown).strip() else ""
    return f"{type(shown).__name__}: {text}" if text else type(shown).__name__
