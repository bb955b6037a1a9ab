"""Slack Web API calls over connections kept open between calls.

slack_sdk's ``WebClient`` opens a new connection for every call (``urllib.request.urlopen``): against Slack that is
a TCP and TLS handshake per call, and a request makes five calls. ``Connections`` sends the same ``urllib`` request
over a pool of kept-alive connections (urllib3, which ``requests`` already brings) and answers as ``urlopen`` would:

* the same dict for a success;
* ``HTTPError`` for a status of 400 or more (slack_sdk reads a 429 and its ``Retry-After`` from it);
* ``URLError`` around the socket's error when no connection could be made;
* a connection broken mid-call as the socket's own error (``RemoteDisconnected``...);
* a read timeout as ``TimeoutError``.

So slack_sdk's parsing and retry handlers (bot/slack/retry.py), and the metrics' outcomes (bot/slack/metered.py),
see the same failures as before. A connection Slack closed while idle is noticed before it is reused (urllib3 checks
it), and a new one made. Nothing is retried here: whether a call may be repeated is the retry handlers' decision.
"""

from __future__ import annotations

import io
import ssl
import time
from http.client import HTTPException, HTTPMessage
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import Request

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

POOL_SIZE = 32  # connections kept per host: more than the threads that call Slack at once (after-ack, lanes, sweep)

# A connection left idle longer than this is closed, not reused. Slack's edge closes idle ones cleanly, which urllib3
# notices before reuse; a NAT or load balancer on the way forgets them silently (AWS's NAT gateway after 350 s, Azure's
# after 4 min), and the first call on one would then fail or time out although it never reached Slack.
MAX_IDLE = 30.0  # seconds
_IDLE_SINCE = "_breakglass_idle_since"  # set on each connection as it goes back to the pool


class _FreshHTTPPool(urllib3.HTTPConnectionPool):
    def _get_conn(self, timeout: float | None = None) -> Any:
        connection = super()._get_conn(timeout)
        idle_since = getattr(connection, _IDLE_SINCE, None)
        if idle_since is not None and time.monotonic() - idle_since > MAX_IDLE:
            connection.close()  # reconnects on use, as urllib3 does with one it found dropped
        return connection

    def _put_conn(self, conn: Any) -> None:
        if conn is not None:
            setattr(conn, _IDLE_SINCE, time.monotonic())
        super()._put_conn(conn)


class _FreshHTTPSPool(_FreshHTTPPool, urllib3.HTTPSConnectionPool):
    pass


class Connections:
    def __init__(self, timeout: float, ssl_context: ssl.SSLContext | None = None, size: int = POOL_SIZE) -> None:
        self._timeout = urllib3.Timeout(connect=timeout, read=timeout)
        # block=False: a thread finding every kept connection busy opens one more and closes it after the call
        self._pool = urllib3.PoolManager(num_pools=4, maxsize=size, block=False, retries=False, ssl_context=ssl_context)
        self._pool.pool_classes_by_scheme = {"http": _FreshHTTPPool, "https": _FreshHTTPSPool}

    def send(self, request: Request) -> dict[str, Any]:
        """``request`` sent as ``urlopen`` would send it: {"status", "headers", "body"}, or its exceptions."""
        try:
            response = self._pool.request(
                request.get_method(),
                request.full_url,
                body=request.data,  # type: ignore[arg-type]  # slack_sdk gives bytes or None
                headers=dict(request.header_items()),
                timeout=self._timeout,
                redirect=False,
                preload_content=True,
            )
        except (NewConnectionError, ConnectTimeoutError) as error:  # never reached Slack
            raise URLError(_reason(error)) from error
        except ReadTimeoutError as error:
            raise TimeoutError(str(error)) from error
        except ProtocolError as error:  # the connection broke mid-call: urllib let that error through as it was
            cause = error.args[1] if len(error.args) > 1 else None
            raise (cause if isinstance(cause, OSError | HTTPException) else URLError(error)) from error
        except urllib3.exceptions.HTTPError as error:  # TLS, a bad address...: urllib gives URLError for these too
            raise URLError(error.__cause__ or error) from error
        headers = HTTPMessage()
        for name, value in response.headers.items():
            headers[name] = value
        if response.status >= 400:
            reason = response.reason or ""
            raise HTTPError(request.full_url, response.status, reason, headers, io.BytesIO(response.data))
        if headers.get_content_type() == "application/gzip":
            return {"status": response.status, "headers": headers, "body": response.data}
        charset = headers.get_content_charset() or "utf-8"
        return {"status": response.status, "headers": headers, "body": response.data.decode(charset)}

    def close(self) -> None:
        self._pool.clear()


def _reason(error: Exception) -> BaseException:
    """The OSError beneath urllib3's wrapper (ConnectionRefusedError, socket.gaierror...), as urllib's ``reason``."""
    cause = error.__cause__ or error.__context__
    if isinstance(cause, OSError):
        return cause
    return TimeoutError(str(error)) if isinstance(error, ConnectTimeoutError) else error
