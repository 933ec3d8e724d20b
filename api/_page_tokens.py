"""Page tokens: Temporal's list cursors, signed so only tokens this API issued reach Temporal."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from api.problems import Problem

_MAC_BYTES = 16
PAGE_TOKEN_PATTERN = r"^(?:[A-Za-z0-9_-]{4})*(?:[A-Za-z0-9_-]{2}==|[A-Za-z0-9_-]{3}=)?$"
"""What every token looks like (padded URL-safe base64); anything else is a 422."""
PAGE_TOKEN_MAX_LENGTH = 4096


class PageTokens:
    """Sign and check the opaque `page_token` of list endpoints.

    A forged or garbled cursor makes Temporal's visibility store fail slowly
    (its client retries), so a token must carry a MAC over the cursor and the
    query it pages through: it is then good only for the same filters.

    A token of the right shape that this API did not issue for the query
    names no page: a 404, as for any id that names nothing. (Its shape is in
    the OpenAPI document, its MAC cannot be, so the 404 is what a client that
    follows the document can be told.)

    Args:
        secret: the signing key; by default a random one, so tokens are good
            only on the API process that issued them.
    """

    def __init__(self, secret: str = "") -> None:
        self._key = secret.encode() if secret else secrets.token_bytes(32)

    def issue(self, cursor: bytes, query: str) -> str:
        """The token to hand out for Temporal's `cursor` of `query`."""
        return base64.urlsafe_b64encode(self._mac(cursor, query) + cursor).decode()

    def open(self, token: str, query: str) -> bytes:
        """Temporal's cursor inside `token`.

        Raises:
            Problem: 404 `page-not-found` for a token this API did not issue for `query`.
        """
        try:
            raw = base64.b64decode(token, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        mac, cursor = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        if not cursor or not hmac.compare_digest(mac, self._mac(cursor, query)):
            raise page_not_found()
        return cursor

    def _mac(self, cursor: bytes, query: str) -> bytes:
        message = query.encode() + b"\0" + cursor
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_MAC_BYTES]


def page_not_found() -> Problem:
    """The answer for a page token that names no page (any more)."""
    return Problem(
        404,
        "page_token names no page: this API did not issue it for these filters, or it expired",
        type_="page-not-found",
    )
