"""Which callback targets are allowed: no address inside our network (SSRF), unless allow-listed; and the
POST that connects to the address that was checked (:func:`post_pinned`)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import httpx

from shared.errors import ValidationFailed

__all__ = ["check_callback_url", "post_pinned"]


def _forbidden(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return (
        addr.is_private
        or addr.is_loopback
        or addr.is_link_local
        or addr.is_multicast
        or addr.is_reserved
        or addr.is_unspecified
    )


def _literal_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_callback_url(url: str, allow_hosts: set[str], *, resolve: bool, allow_http: bool = True) -> str | None:
    """Refuse callback targets inside our network (SSRF), unless the host is allow-listed.

    At submit time (``resolve=False``) only literal addresses are checked. At delivery time every
    address the name resolves to is checked and one of them is returned: the caller connects to that
    address (not to a second lookup), so DNS rebinding cannot slip through between check and use.
    Returns ``None`` for an allow-listed host (connect by name).
    """
    scheme, host, port = _target(url)
    if host in allow_hosts:
        return None
    if scheme == "http" and not allow_http:
        raise ValidationFailed("callback_url must use https", code="insecure_callback_url")
    addresses = _addresses(host, port, resolve=resolve)
    if any(_forbidden(addr) for addr in addresses):
        raise ValidationFailed(
            f"callback_url host {host!r} is a private, loopback or reserved address",
            code="forbidden_callback_url",
        )
    return str(addresses[0]) if addresses else None


def _target(url: str) -> tuple[str, str, int | None]:
    """Scheme, lower-case host and port of an absolute http(s) URL, or :class:`ValidationFailed`."""
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        port = parts.port
        if not _literal_ip(host):
            host.encode("idna")  # a name DNS could carry: labels of 1-63 characters
    except (ValueError, UnicodeError):
        raise ValidationFailed("callback_url is not a valid URL", code="invalid_callback_url") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ValidationFailed("callback_url must be an absolute http(s) URL", code="invalid_callback_url")
    return parts.scheme, host, port


def _addresses(host: str, port: int | None, *, resolve: bool) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The literal address, or (when ``resolve``) every address the name resolves to; else none."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    if not resolve:
        return []
    try:
        infos = socket.getaddrinfo(host, port or 443, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError, ValueError) as exc:
        raise ValidationFailed(f"callback host {host!r} does not resolve", code="invalid_callback_url") from exc
    return [ipaddress.ip_address(info[4][0]) for info in infos]


def post_pinned(
    http: httpx.Client, url: str, pinned: str | None, body: bytes, headers: dict[str, str], *, timeout_s: float
) -> httpx.Response:
    """POST to ``url``, connecting to ``pinned`` (the address :func:`check_callback_url` checked, so a DNS
    answer that changes in between cannot redirect it), never following redirects."""
    if pinned is None:
        return http.post(url, content=body, headers=headers, timeout=timeout_s)
    parts = httpx.URL(url)
    target = parts.copy_with(host=pinned.strip("[]"))
    headers = {**headers, "Host": parts.netloc.decode()}
    return http.post(target, content=body, headers=headers, timeout=timeout_s, extensions={"sni_hostname": parts.host})
