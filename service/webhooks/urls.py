"""Where webhooks may go: http(s) URLs whose host resolves only to public addresses, unless the operator allows
private ones (`--webhook-allow-private-urls`: loopback, link-local, private, shared and reserved ranges).
Checked when an endpoint is saved and again before every attempt (a name may resolve elsewhere later)."""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit


class RefusedURL(ValueError):
    """Why a URL is not one webhooks may be sent to."""


def _public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def check_url(url: str, allow_private: bool) -> None:
    """Raise RefusedURL unless webhooks may be sent to `url` (resolving its host: a blocking call)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise RefusedURL("must be an http or https URL with a host")
    if parts.username or parts.password:
        raise RefusedURL("must not carry credentials")
    if allow_private:
        return
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)}
    except (OSError, ValueError) as e:
        raise RefusedURL(f"its host cannot be resolved ({e})") from None
    private = sorted(a for a in addresses if not _public(a))
    if private:
        raise RefusedURL(f"its host resolves to a non-public address ({', '.join(private)}); the operator may allow "
                         "private addresses with --webhook-allow-private-urls")
