"""The server of ``fer-stream review DIR``: the review page on its own, for a store no run serves.

The same bounded server and access rules as ``--serve`` (:mod:`fer_stream.serve.server`,
:mod:`fer_stream.serve.access`): loopback unless told otherwise, the ``Host`` checked, a token (at
least 16 characters) required when given. It answers the review endpoints
(:mod:`fer_stream.serve.review`) and the page at ``/`` too; everything else is a 404.

>>> with ReviewServer(ReviewStore.open("review/"), "127.0.0.1", 0) as server:   # doctest: +SKIP
...     print(server.url + "/review")
"""

from __future__ import annotations

from collections.abc import Iterable

from fer_stream.io.review import ReviewStore
from fer_stream.serve import review
from fer_stream.serve.access import Access, check_token
from fer_stream.serve.server import Handler, Refusal, bind

NOT_FOUND = b"not found; the review page is at /review\n"
BUSY = b"server busy: every connection is in use; try again shortly\n"


class ReviewServer:
    """The review page for ``store`` on ``host:port``, on a background thread while the context is open."""

    def __init__(
        self,
        store: ReviewStore,
        host: str,
        port: int,
        *,
        token: str = "",
        by: str = "",
        allowed_hosts: str | Iterable[str] = (),
        max_clients: int = 16,
        timeout: float = 10.0,
        head_timeout: float = 10.0,
    ) -> None:
        check_token(token)
        self.site = review.ReviewSite(store, by)
        self.access = Access(host, token, allowed_hosts)
        self.server = bind(
            host,
            port,
            self.answer,
            token=token,
            exposes="sees the faces and can label them",
            token_hint="--token (or $FER_STREAM_SERVE_TOKEN)",
            max_clients=max_clients,
            timeout=timeout,
            head_timeout=head_timeout,
            post_paths=review.LABELS_PATH,
        )

    @property
    def url(self) -> str:
        return self.server.url

    def answer(self, req: Handler) -> None:
        """One request: Host and token (421, 401), a free slot (503), then the review endpoints or 404."""
        refusal = self.access.refusal(req.headers.get("Host") or "", req.headers.get("Authorization") or "", req.path)
        if refusal is not None:
            req.send(refusal[0], "text/plain", refusal[1])
            return
        if req.probe_only:
            req.send(503, "text/plain", BUSY)
            return
        path = req.path.split("?")[0].rstrip("/") or "/"
        try:
            if path == "/" and req.command == "GET":
                review.page(self.site, req)
            elif not review.answer(self.site, req, path):
                req.send(404, "text/plain", NOT_FOUND)
        except Refusal as r:
            req.refuse(r)

    def __enter__(self) -> ReviewServer:
        self.server.start("fer-review")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()
