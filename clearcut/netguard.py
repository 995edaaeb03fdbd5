"""Safe outbound HTTP for user-supplied URLs (``image_url`` now, webhooks later).

* http/https only; every address a host resolves to must be public — loopback, private, link-local
  (cloud metadata), multicast, reserved, unspecified, CGNAT and IPv4-mapped/6to4 forms of those are
  refused with ``url_not_allowed``. Decimal/octal/hex IP spellings are caught because the check runs
  on the resolved address, not the text.
* The connection goes to the address that was checked (no second DNS lookup, so DNS rebinding cannot
  swap in a private address); TLS still verifies the original host name.
* Redirects are followed by hand, each hop checked the same way, at most ``MAX_REDIRECTS``.
* Connect/read timeouts, and a byte cap enforced while streaming.
* ``CLEARCUT_URL_ALLOWLIST`` (hosts or CIDRs) bypasses the address check — for tests and for
  trusted internal image hosts.
"""
from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

from clearcut import config
from clearcut.errors import ClearcutError, ImageTooLarge

MAX_REDIRECTS = 5
_EXTRA_BLOCKED = [ipaddress.ip_network(n) for n in ("100.64.0.0/10", "192.0.0.0/24", "198.18.0.0/15",
                                                    "64:ff9b::/96", "fd00:ec2::254/128")]


class UrlError(ClearcutError):
    status = 400
    code = "invalid_image_url"


@dataclass
class Fetched:
    data: bytes
    content_type: str
    url: str


def _allowlist() -> tuple[set[str], list]:
    hosts, networks = set(), []
    for item in filter(None, (i.strip() for i in config.get("CLEARCUT_URL_ALLOWLIST").split(","))):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            hosts.add(item.lower())
    return hosts, networks


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour or (ip.teredo[1] if ip.teredo else None)
        if embedded is not None and not is_public(str(embedded)):
            return False
    if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_loopback or ip.is_link_local:
        return False
    return not any(ip in net for net in _EXTRA_BLOCKED)


def resolve_checked(host: str, port: int) -> str:
    """The first resolved address of ``host`` after checking that all of them are allowed."""
    hosts, networks = _allowlist()
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UrlError(f"the host {host!r} could not be resolved", code="image_url_unreachable")
    addresses = [info[4][0] for info in infos]
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%")[0])
        allowed = host.lower() in hosts or any(ip in net for net in networks)
        if not allowed and not is_public(address):
            raise UrlError("the URL points to a private, loopback or link-local address, which is not allowed",
                           code="url_not_allowed")
    return addresses[0]


def _split(url: str):
    try:
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UrlError(f"{url!r} is not a valid URL")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlError("only http:// and https:// URLs with a host name are accepted",
                       code="url_not_allowed" if parts.scheme else "invalid_image_url")
    if parts.username or parts.password:
        raise UrlError("URLs with embedded credentials are not allowed", code="url_not_allowed")
    return parts, port


def pinned_pool(url: str, timeout: float):
    """(connection pool, request path, Host header) for ``url``, connected to the checked address.

    Raises ``UrlError`` (``url_not_allowed`` …) before any connection is made."""
    import certifi
    import urllib3

    parts, port = _split(url)
    address = resolve_checked(parts.hostname, port)
    kwargs = dict(timeout=urllib3.Timeout(connect=timeout, read=timeout), retries=False, maxsize=1)
    if parts.scheme == "https":
        pool = urllib3.HTTPSConnectionPool(address, port, server_hostname=parts.hostname,
                                           assert_hostname=parts.hostname, cert_reqs="CERT_REQUIRED",
                                           ca_certs=certifi.where(), **kwargs)
    else:
        pool = urllib3.HTTPConnectionPool(address, port, **kwargs)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.hostname if port in (80, 443) else f"{parts.hostname}:{port}"
    return pool, path, host_header


def fetch(url: str, *, max_bytes: int, timeout: float | None = None, user_agent: str = "Clearcut/1.0",
          ) -> Fetched:
    import urllib3

    timeout = timeout or config.get("CLEARCUT_URL_TIMEOUT_S")
    for _ in range(MAX_REDIRECTS + 1):
        pool, path, host_header = pinned_pool(url, timeout)
        try:
            response = pool.urlopen("GET", path, headers={"Host": host_header, "User-Agent": user_agent,
                                                          "Accept": "image/*"},
                                    redirect=False, preload_content=False)
        except urllib3.exceptions.TimeoutError:
            raise UrlError(f"fetching the image URL timed out after {timeout:g} s", code="image_url_timeout")
        except urllib3.exceptions.HTTPError as exc:
            raise UrlError(f"the image URL could not be fetched ({type(exc).__name__})",
                           code="image_url_unreachable")
        try:
            if response.status in (301, 302, 303, 307, 308) and response.headers.get("Location"):
                url = urljoin(url, response.headers["Location"])
                continue
            if response.status != 200:
                raise UrlError(f"the image URL answered HTTP {response.status}", code="image_url_unreachable",
                               upstream_status=response.status)
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > max_bytes:
                raise ImageTooLarge(f"the image at the URL is {declared} bytes; the limit is {max_bytes}")
            chunks, total = [], 0
            try:
                for chunk in response.stream(65536):
                    total += len(chunk)
                    if total > max_bytes:
                        raise ImageTooLarge(f"the image at the URL is larger than the {max_bytes}-byte limit")
                    chunks.append(chunk)
            except urllib3.exceptions.TimeoutError:
                raise UrlError(f"reading the image URL timed out after {timeout:g} s", code="image_url_timeout")
            except urllib3.exceptions.HTTPError:
                raise UrlError("the connection broke while reading the image URL", code="image_url_unreachable")
            return Fetched(b"".join(chunks), response.headers.get("Content-Type", ""), url)
        finally:
            response.release_conn()
            pool.close()
    raise UrlError(f"the image URL redirected more than {MAX_REDIRECTS} times", code="image_url_unreachable")
