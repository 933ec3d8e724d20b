"""Page tokens: Temporal's list cursors, signed so only tokens this API issued reach Temporal."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

from api.problems import Problem

_MAC_BYTES = 16


class PageTokens:
    """Sign and check the opaque `page_token` of list endpoints.

    A forged or garbled cursor makes Temporal's visibility store fail slowly
    (its client retries), so a token must carry a MAC over the cursor and the
    query it pages through: it is then good only for the same filters.

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
            Problem: 422 for a token this API did not issue for `query`.
        """
        try:
            raw = base64.b64decode(token, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raw = b""
        mac, cursor = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        if not cursor or not hmac.compare_digest(mac, self._mac(cursor, query)):
            raise Problem(422, "page_token is not a token this API issued", type_="invalid-request")
        return cursor

    def _mac(self, cursor: bytes, query: str) -> bytes:
        message = query.encode() + b"\0" + cursor
        return hmac.new(self._key, message, hashlib.sha256).digest()[:_MAC_BYTES]
