"""One answer of the chats endpoint read as a page: its usable chats in `updated_at` order, and
what the server says follows it.

Each chat is validated on its own: text PostgreSQL cannot store is repaired, a chat without a
usable id or `updated_at` is left out and named by id or position, never by its values, so one
unreadable chat is never the reason a day fails. Only a body that is not a JSON array at all
fails the request.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import requests

from chat_assets.grammar import parse_instant
from chat_assets.ujet.errors import UjetResponseError

# JSON escapes that parse into text PostgreSQL cannot store: NUL, and UTF-16 surrogates (a pair
# parses into one character and is harmless; an unpaired one is not). Found in the raw bytes,
# so the common page is never walked.
_NEEDS_REPAIR = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_UNPAIRED = re.compile("[\ud800-\udfff]")


@dataclass(frozen=True)
class Page:
    """One answer: its usable chats in order, and what more the server says there is."""

    chats: list[tuple[dict, datetime]]
    total: int | None
    """Chats the server counts for the request's query, this page's and those after it."""
    more: bool
    left_out: dict[str, str]
    """Chats left out: a key telling one from another (its id, or a digest of it when it has
    none; never shown), and the label naming it (by id or by position in this answer)."""
    repaired: list[int]


def read_page(
    response: requests.Response,
    page_number: int,
    per: int,
    request: int,
    window: str,
    *,
    address_from: str,
) -> Page:
    """The page `response` answers, asked for as page `page_number` of `per` chats;
    `address_from` names the setting(s) of the address, for a body that is no page of chats.

    The `Link` header, where a deployment sends one, is read with requests' RFC 8288 parser
    for its rel="next"; its targets are never followed (the next page is the same query with
    the next number, and credentials never go to a host the header names). Without links,
    `total` and the page size tell, as the vendor's pagination page advises.
    """
    chats, size, left_out, repaired = _chats(response, request, window, address_from)
    server_per = _int_header(response, "per-page")
    if server_per:
        # A server that caps the page lower than asked still pages "full" pages.
        per = min(per, server_per)
    total = _int_header(response, "total")
    links = response.links  # header names are case-insensitive
    if size == 0:
        more = False
    elif "next" in links:
        more = True
    elif total is not None:
        more = total > (page_number - 1) * per + size
    else:
        more = not links and size >= per
    if chats and any(a[1] > b[1] for a, b in itertools.pairwise(chats)):
        raise UjetResponseError(
            f"UJET request {request} of the window {window} was not in updated_at order; "
            "the API seems to ignore sort_column, so tailing cannot be trusted"
        )
    return Page(chats, total, more, left_out, repaired)


def _is_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def chat_id(value: object) -> int | None:
    """An int id from an int or a string of ASCII digits; None otherwise (bools are not ids)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and _is_digits(value.strip()):
        return int(value.strip())
    return None


def _int_header(response: requests.Response, name: str) -> int | None:
    """A non-negative integer header, or None when absent or not a number."""
    raw = response.headers.get(name)
    if raw is None or not _is_digits(raw.strip()):
        return None
    return int(raw.strip())


def _json_kind(body: object) -> str:
    """What a JSON value is, in words, without any of its content."""
    if body is None:
        return "an empty body or null"
    if isinstance(body, dict):
        return "a JSON object"
    if isinstance(body, str):
        return "a JSON string"
    return "a JSON scalar"


def _repaired_text(text: str) -> str:
    return _UNPAIRED.sub("\ufffd", text.replace("\x00", ""))


def _repaired(value: Any) -> Any:
    """A copy of a parsed chat with NUL removed and unpaired surrogates replaced by U+FFFD."""
    if isinstance(value, str):
        return _repaired_text(value)
    if isinstance(value, dict):
        return {_repaired_text(k): _repaired(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_repaired(v) for v in value]
    return value


def _chats(
    response: requests.Response, request: int, window: str, address_from: str
) -> tuple[list[tuple[dict, datetime]], int, dict[str, str], list[int]]:
    """(usable chats with parsed updated_at, chats in the body, those left out by key and
    label, ids of those repaired). Raises, without quoting the body, only when the body as a whole
    is not a JSON array."""
    if response.status_code == 204 or not response.content:
        if response.status_code == 204:
            return [], 0, [], []
        body: Any = None
    else:
        body = _json_body(response, request, window, address_from)
    if not isinstance(body, list):
        raise UjetResponseError(
            f"UJET request {request} of the window {window} was not a JSON array of chat "
            f"objects (got {_json_kind(body)}): check {address_from} points at the Manager API"
        )
    suspicious = _NEEDS_REPAIR.search(response.content) is not None
    chats: list[tuple[dict, datetime]] = []
    left_out: dict[str, str] = {}
    repaired: list[int] = []
    for position, record in enumerate(body, start=1):
        record_id = chat_id(record.get("id")) if isinstance(record, dict) else None
        updated = parse_instant(record.get("updated_at")) if isinstance(record, dict) else None
        if record_id is None or updated is None:
            if record_id is not None:
                left_out[f"id {record_id}"] = f"id {record_id}"
            else:
                # Lanes' answers may overlap: the same chat, met twice, is one chat.
                left_out[_digest(record)] = f"request {request} position {position}"
            continue
        if suspicious:
            clean = _repaired(record)
            if clean != record:
                repaired.append(record_id)
                record = clean
        record["id"] = record_id
        # One canonical form, so every later reader parses the same instant the same way.
        record["updated_at"] = updated.isoformat().replace("+00:00", "Z")
        chats.append((record, updated))
    return chats, len(body), left_out, repaired


def _digest(record: object) -> str:
    """A key for a chat without a usable id, the same wherever it is met; never shown, since
    it is made of the chat's values."""
    text = json.dumps(record, sort_keys=True, default=str, ensure_ascii=False)
    return "digest " + hashlib.blake2b(text.encode("utf-8", "surrogatepass")).hexdigest()


def _no_constant(name: str) -> None:
    """NaN and Infinity are not JSON and no column can hold them: read them as null."""
    return None


def _json_body(response: requests.Response, request: int, window: str, address_from: str) -> Any:
    """The parsed body; bytes that are not UTF-8 are replaced by U+FFFD, not fatal."""
    content = response.content
    try:
        try:
            return json.loads(content, parse_constant=_no_constant)
        except UnicodeDecodeError:
            text = content.decode("utf-8", "replace")
            return json.loads(text, parse_constant=_no_constant)
    except ValueError:
        # from None: JSONDecodeError keeps the whole body in .doc.
        content_type = response.headers.get("content-type", "unknown").split(";")[0]
        raise UjetResponseError(
            f"UJET request {request} of the window {window} was not JSON (content type "
            f"{content_type[:60]!r}): check {address_from} points at the Manager API"
        ) from None
