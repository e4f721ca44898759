"""Who may call the prediction service's admin endpoints.

`POST /ops/reload` swaps the model being served. When TAXI_RELOAD_TOKEN is set (compose and the
Helm chart set it from a secret), the call must carry `Authorization: Bearer <that token>`;
unset, the endpoint is open, as on a developer's loopback-only service (`make serve`).
"""

from __future__ import annotations

import hmac


def reload_refusal(configured_token: str | None, authorization: str | None) -> str | None:
    """None when the call may go ahead; otherwise why it may not (for a 401 body).

    The comparison takes the same time whatever the token sent (hmac.compare_digest)."""
    if not configured_token:
        return None
    if not authorization:
        return "POST /ops/reload needs 'Authorization: Bearer <token>' (TAXI_RELOAD_TOKEN is set on this service)"
    scheme, _, sent = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not sent.strip():
        return "the Authorization header must be 'Bearer <token>'"
    if not hmac.compare_digest(sent.strip().encode(), configured_token.encode()):
        return "the bearer token does not match TAXI_RELOAD_TOKEN"
    return None
