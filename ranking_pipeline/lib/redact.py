"""What may be shown of a URL or a secret: never a password or a token, however malformed the value is.

A URL is split by its own markers only: its scheme ends at the first ``://``, its user part (user name and
password) at the last ``@``. What is shown is the scheme and the host, when the host is plainly one (letters,
digits, dots, dashes, or an IPv6 address in brackets); anything that might be a misplaced password (a port
that is not a number, a user part with a raw ``@``, a query ``?password=``) is left out. A value without a
scheme shows nothing but ``(value hidden)``.

``scrub`` is the last line of defence: messages about a value (a driver's error, a parser's) have the
secret's pieces (the whole value, its user part, its password, raw and %-decoded) replaced by ``***``;
``scrub_settings`` does it for every secret of the configured settings, for what a third party says (an alert
channel's error). ``public_url`` is a URL fit for a link in an alert: without the user name and password (or a
query's token) a browser may carry in it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import parse_qsl, unquote

HIDDEN = "(value hidden)"
MASK = "***"
ELIDED = "…"

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]{0,39})://")
_HOST = re.compile(r"[\w.\-]{1,253}|\[[0-9A-Fa-f:.]{2,45}\]")
_PORT = re.compile(r"\d{1,5}")
_PLAIN_NAME = re.compile(r"[\w.\-$]{1,63}")  # a user or database name shown as it is
_SECRET_QUERY_KEYS = {"password", "passwd", "pass", "pwd", "token", "secret", "key", "sslpassword"}
_SHORTEST_SCRUBBED = 4  # shorter pieces would mangle ordinary words; the structure hides them anyway


def scheme_of(value: str) -> str | None:
    """The scheme (``postgresql``) of a value that starts like a URL, else None."""
    match = _SCHEME.match(value.strip())
    return match.group(1) if match else None


def is_plain_host(host: str) -> bool:
    return bool(_HOST.fullmatch(host))


def is_plain_name(name: str) -> bool:
    return bool(_PLAIN_NAME.fullmatch(name))


def _after_scheme(text: str) -> str:
    match = _SCHEME.match(text)
    return text[match.end() :] if match else text


def url_location(value: str) -> str:
    """``scheme://host`` (with ``:port`` when the port is a number after a user part), or ``scheme://…`` when
    the host is not plainly one, or ``(value hidden)`` without a scheme. Never anything of the user part, the
    path or the query."""
    text = value.strip()
    scheme = scheme_of(text)
    if scheme is None:
        return HIDDEN
    rest = _after_scheme(text)
    _, at, after = rest.rpartition("@")
    host_port = re.split(r"[/?#]", after if at else rest, maxsplit=1)[0]
    if host_port.startswith("["):
        host, bracket, tail = host_port.partition("]")
        if not bracket or (tail and not tail.startswith(":")):
            return f"{scheme}://{ELIDED}"
        host, port = host + "]", tail[1:] if tail else None
    else:
        host, colon, port = host_port.partition(":")
        port = port if colon else None
    if port is not None and not _PORT.fullmatch(port):
        # no user part: "user:password/..." may be what sits here, so the name before it is not shown either
        return f"{scheme}://{host}" if at and is_plain_host(host) else f"{scheme}://{ELIDED}"
    if not host:
        return f"{scheme}://"
    if not is_plain_host(host):
        return f"{scheme}://{ELIDED}"
    return f"{scheme}://{host}" + (f":{port}" if port and at else "")


def secret_pieces(value: str, *, whole: bool = True) -> set[str]:
    """The pieces of ``value`` that must never be shown: the whole value (``whole``) and, for what looks like
    a URL, its user part, its password and any ``?password=``-like parameter, each raw and %-decoded."""
    text = value.strip()
    pieces = {value, text} if whole else set()
    rest = _after_scheme(text)
    query = rest.partition("?")[2]
    user_part, at, _ = rest.rpartition("@")
    if at:
        password = user_part.partition(":")[2]
        pieces.add(password)
        if password or not is_plain_name(user_part):
            pieces.add(user_part)
    else:
        # "user:password/db" without an "@": what stands where a port would go may be the password
        port = re.split(r"[/?#]", rest, maxsplit=1)[0].partition(":")[2]
        if not port.isdigit():
            pieces.add(port)
    for key, item in parse_qsl(query, keep_blank_values=True):
        if key.strip().lower() in _SECRET_QUERY_KEYS:
            pieces.add(item)
    pieces |= {unquote(piece) for piece in pieces}
    return {piece for piece in pieces if len(piece) >= _SHORTEST_SCRUBBED}


def scrub(text: str, pieces: Iterable[str]) -> str:
    """``text`` with every piece (``secret_pieces``) replaced by ``***``, the longest first."""
    for piece in sorted(set(pieces), key=len, reverse=True):
        text = text.replace(piece, MASK)
    return text


def scrub_settings(text: str, environ: Mapping[str, str] | None = None) -> str:
    """``text`` without any piece of a configured secret setting (``lib/settings.py``; the environment)."""
    from ranking_pipeline.lib.settings import secret_pieces_of

    return scrub(text, secret_pieces_of(os.environ if environ is None else environ))


def public_url(url: str) -> str:
    """What of a URL may become a link people are sent (in an alert): its scheme, host, port and path; never
    its user part (all before the last ``@``, as above), query or fragment. No scheme: ``(value hidden)``."""
    text = url.strip()
    scheme = scheme_of(text)
    if scheme is None:
        return HIDDEN
    _, _, after = _after_scheme(text).rpartition("@")
    return f"{scheme}://{re.split(r'[?#]', after, maxsplit=1)[0]}"
