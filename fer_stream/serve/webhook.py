"""``--webhook URL``: each episode and alert record POSTed as JSON, signed, retried while the receiver is down.

With a secret (``--webhook-secret``, better ``$FER_STREAM_WEBHOOK_SECRET``: a flag shows in the
process list) every request carries ``X-Fer-Stream-Signature: sha256=<hex HMAC-SHA256 of the body>``,
as GitHub signs its webhooks; the receiver recomputes it over the raw body and compares in constant
time. ``X-Fer-Stream-Id`` is a key no two records share (``ID:SEQ``; an alert's own id): a
receiver that answered too slowly and got a record again can tell.

A 2xx answer delivers the record; a network error, a timeout, 408, 429 or 5xx is retried with a
growing delay (:class:`~fer_stream.serve.outbox.Outbox`); any other answer (the receiver refuses
it: 400, 401, 404 ...) is given up and counted as ``rejected``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from fer_stream.errors import ConfigError
from fer_stream.io.sources import redact
from fer_stream.serve.outbox import Outbox
from fer_stream.stream.episode_sink import record_key

log = logging.getLogger("fer_stream")
SIGNATURE = "X-Fer-Stream-Signature"
RETRY = {408, 429}


def signature(secret: str, body: bytes) -> str:
    """The ``X-Fer-Stream-Signature`` header's value for ``body``.

    >>> signature("s3cret", b'{"type": "start"}')
    'sha256=0376f7fde3d742acc8e97bcd44fc100ead831a65b178910cd2c5f8799139a601'
    """
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookPublisher:
    """An outlet (``send``, ``close``) that POSTs each record to ``url`` (see the module's text)."""

    def __init__(self, url: str, *, secret: str = "", queue: int = 1000, timeout: float = 10.0) -> None:
        p = urllib.parse.urlsplit(url)
        if p.scheme not in ("http", "https") or not p.hostname:
            raise ConfigError(f"--webhook '{redact(url)}' must be an http:// or https:// URL")
        self.url = redact(url)
        self._auth = ""
        if p.username is not None:  # urllib would send user:pass@ to the server as the host: a Basic header instead
            pair = f"{urllib.parse.unquote(p.username)}:{urllib.parse.unquote(p.password or '')}".encode()
            self._auth = "Basic " + base64.b64encode(pair).decode()
            p = p._replace(netloc=p.hostname + (f":{p.port}" if p.port else ""))
        self.target = urllib.parse.urlunsplit(p)
        self.secret = secret
        self.timeout = timeout
        self.rejected = 0
        self.outbox = Outbox("webhook", self._deliver, size=queue)

    def send(self, record: dict[str, Any]) -> None:
        if record["type"] != "state":  # a webhook gets moments, not a camera's running state
            self.outbox.send(record)

    def _deliver(self, record: dict[str, Any]) -> bool:
        body = json.dumps(record).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "fer-stream", "X-Fer-Stream-Id": record_key(record)}
        if self.secret:
            headers[SIGNATURE] = signature(self.secret, body)
        if self._auth:
            headers["Authorization"] = self._auth
        req = urllib.request.Request(self.target, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as answer:  # noqa: S310 (the user's own URL)
                answer.read(1024)
            return True
        except urllib.error.HTTPError as e:
            if e.code in RETRY or e.code >= 500:
                log.debug("webhook %s answered %d; retrying", self.url, e.code)
                return False
            self.rejected += 1
            log.warning("webhook %s refused a record (HTTP %d); it is dropped", self.url, e.code)
            return True
        except (OSError, ValueError, http.client.HTTPException) as e:  # refused, unreachable, timed out, TLS, a bad answer
            log.debug("webhook %s unreachable (%s); retrying", self.url, type(e).__name__)
            return False

    def counts(self) -> dict[str, int]:
        return {**self.outbox.snapshot(), "rejected": self.rejected}

    def close(self) -> None:
        self.outbox.close()
