"""Who may ask the ``--serve`` server: the ``Host`` a request names, and the token.

A request must name this server in its ``Host`` header, so a DNS-rebinding page (whose ``Host``
is the attacker's domain) cannot reach it: the bound address (with ``localhost`` for loopback);
bound to every interface (``0.0.0.0``, ``::``) without a token, any address of this machine,
``localhost`` or the host name; always the names in ``allowed_hosts`` (``serve.allowed_hosts``).
With a ``token`` (at least 16 characters) every request must carry it (``Authorization: Bearer
TOKEN`` or ``?token=TOKEN``), and on every interface any ``Host`` is accepted unless
``allowed_hosts`` lists them.

>>> Access("127.0.0.1").refusal("localhost:9108", "", "/healthz") is None
True
>>> Access("127.0.0.1").refusal("attacker.example", "", "/healthz")[0]
421
"""

from __future__ import annotations

import hmac
import ipaddress
import re
import socket
import urllib.parse
from collections.abc import Iterable

from fer_stream.errors import ConfigError

MIN_TOKEN = 16
PLACEHOLDER_TOKENS = ("change-me", "changeme")  # what samples and tutorials ship
WILDCARDS = ("0.0.0.0", "::", "")
UNKNOWN_HOST = b"unknown Host; use an address or name of this machine, or list the name in serve.allowed_hosts\n"
TOKEN_REQUIRED = b"token required: Authorization: Bearer TOKEN or ?token=TOKEN\n"
_NAME = re.compile(r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$")  # a host name or an IPv4 address


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def parse_address(text: str) -> tuple[str, int]:
    """``PORT``, ``:PORT`` or ``HOST:PORT`` -> (host, port); the host defaults to 127.0.0.1."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"  # [::1]:9108 is IPv6
    if not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--serve '{text}' must be PORT or HOST:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:8080")
    return host, int(port)


def check_token(token: str) -> None:
    """A token must be hard to guess: at least :data:`MIN_TOKEN` characters, not a sample's placeholder."""
    how = f"use at least {MIN_TOKEN} random characters, e.g. from: python -c 'import secrets; print(secrets.token_urlsafe(24))'"
    if token.strip().lower() in PLACEHOLDER_TOKENS:
        raise ConfigError(f"the serve token is the samples' placeholder '{token.strip()}', which anyone can guess; {how}")
    if token and len(token) < MIN_TOKEN:
        raise ConfigError(f"the serve token has {len(token)} characters, too few to be safe; {how}")


def host_name(header: str) -> str | None:
    """The name in a ``Host`` header, lower case, without port, brackets or a final dot; ``None`` if malformed."""
    h = header.strip().lower()
    if h.startswith("["):  # [IPv6]:port
        name, sep, rest = h[1:].partition("]")
        if not sep or not _is_ip(name, 6) or (rest and not (rest[:1] == ":" and rest[1:].isdigit())):
            return None
        return name
    if h.count(":") > 1:  # an IPv6 address without brackets (browsers add them)
        return h if _is_ip(h, 6) else None
    name, sep, port = h.partition(":")
    name = name.rstrip(".")
    if not _NAME.match(name) or (sep and not port.isdigit()):
        return None
    return name


def _is_ip(text: str, version: int) -> bool:
    try:
        return ipaddress.ip_address(text).version == version
    except ValueError:
        return False


def is_local_address(text: str) -> bool:
    """Whether ``text`` is an IP address of this machine (it can be bound to): loopback or an interface's."""
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return False
    if ip.is_loopback:
        return True
    if ip.is_unspecified or ip.is_multicast:
        return False
    with socket.socket(socket.AF_INET6 if ip.version == 6 else socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((str(ip), 0))
        except OSError:
            return False
    return True


def local_names() -> set[str]:
    """Names of this machine that need no look-up: ``localhost`` and the host name (with and without its domain)."""
    name = socket.gethostname().lower().rstrip(".")
    return {"localhost", name, name.split(".")[0]} - {""}


def split_hosts(text: str) -> set[str]:
    """``serve.allowed_hosts`` ("a.example, 10.0.0.21:9108") as names, lower case, ports dropped."""
    names = {host_name(h) for h in re.split(r"[\s,]+", text) if h}
    return {n for n in names if n}


class Access:
    """The Host names and the token a server bound to ``host`` accepts (see the module's text)."""

    def __init__(self, host: str, token: str = "", allowed_hosts: str | Iterable[str] = ()) -> None:
        self.token = token
        extra = split_hosts(allowed_hosts if isinstance(allowed_hosts, str) else ",".join(allowed_hosts))
        self.names = {host.lower()} | extra
        self.any_address = False  # any IP address of this machine
        self.any_host = False
        if is_loopback(host):
            self.names |= {"localhost", "127.0.0.1", "::1"}
        elif host in WILDCARDS:
            if token and not extra:
                self.any_host = True  # the token is the defence; names behind proxies vary
            else:
                self.names |= local_names() | {"127.0.0.1", "::1"}
                self.any_address = True

    def host_allowed(self, header: str) -> bool:
        """Whether a ``Host`` header names this server."""
        if self.any_host:
            return True
        name = host_name(header)
        if name is None:
            return False
        return name in self.names or (self.any_address and is_local_address(name))

    def refusal(self, host: str, authorization: str, target: str) -> tuple[int, bytes] | None:
        """``(status, text)`` for a request to refuse (421: another Host, 401: no token), else ``None``.

        ``host`` and ``authorization`` are the headers (empty when missing), ``target`` the path with its query.
        """
        if not self.host_allowed(host):
            return 421, UNKNOWN_HOST
        if self.token:
            query = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
            given = authorization.removeprefix("Bearer ").strip() or (query.get("token") or [""])[0]
            if not hmac.compare_digest(given.encode(), self.token.encode()):
                return 401, TOKEN_REQUIRED
        return None
