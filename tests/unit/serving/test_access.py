"""POST /ops/reload's access rule (serving.access): open without a configured token, bearer token otherwise."""

from __future__ import annotations

import pytest

from chicago_taxi.serving.access import reload_refusal


def test_without_a_configured_token_the_endpoint_is_open():
    assert reload_refusal(None, None) is None
    assert reload_refusal("", "Bearer anything") is None


@pytest.mark.parametrize(
    "header, reason",
    [
        (None, "needs 'Authorization: Bearer <token>'"),
        ("", "needs 'Authorization: Bearer <token>'"),
        ("s3cret", "must be 'Bearer <token>'"),
        ("Basic s3cret", "must be 'Bearer <token>'"),
        ("Bearer ", "must be 'Bearer <token>'"),
        ("Bearer s3cre", "does not match"),
        ("Bearer s3cret2", "does not match"),
    ],
)
def test_a_configured_token_refuses_every_other_header(header, reason):
    refusal = reload_refusal("s3cret", header)
    assert refusal is not None and reason in refusal


@pytest.mark.parametrize("header", ["Bearer s3cret", "bearer s3cret", "  Bearer   s3cret  "])
def test_the_configured_bearer_token_is_accepted(header):
    assert reload_refusal("s3cret", header) is None
