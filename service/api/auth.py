"""API-key check for gallery writes: `Authorization: Bearer <key>`, compared in constant time."""

from __future__ import annotations

import hashlib
import hmac

from service.errors import Unauthorized


def _digest(value: str) -> bytes:
    # Comparing fixed-size digests keeps the comparison's time independent of the key's length
    # as well as its content.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).digest()


def check_api_key(configured: str, authorization: str | None) -> None:
    """Raise `Unauthorized` unless `authorization` carries the configured key (no key: open)."""
    if not configured:
        return
    scheme, _, token = (authorization or "").strip().partition(" ")
    valid = hmac.compare_digest(_digest(token.strip()), _digest(configured))
    if scheme.lower() != "bearer" or not valid:
        raise Unauthorized(
            "this call needs the API key: Authorization: Bearer <key>",
            headers={"WWW-Authenticate": 'Bearer realm="vision"'},
        )
