"""Schemathesis hooks for .ci/contract.sh.

`timeout_ms` on /classify lets a client ask for a deadline shorter than the server's; a request
with `timeout_ms: 1` is *meant* to get 503 `deadline_exceeded`, which the strict "no 5xx" check
would report as a server fault. Generated deadlines are therefore raised to the server's default
(10 s; longer ones are ignored by the server), so any 5xx left is a real fault. Everything else
about the generated requests, including invalid `timeout_ms` values, is left alone.
"""

import schemathesis

SERVER_DEFAULT_TIMEOUT_MS = 10_000


@schemathesis.hook
def before_call(context, case, kwargs):
    """Runs before every request of every phase (examples, coverage, fuzzing)."""
    body = case.body
    if (
        isinstance(body, dict)
        and type(body.get("timeout_ms")) is int
        and 1 <= body["timeout_ms"] < SERVER_DEFAULT_TIMEOUT_MS
    ):
        body["timeout_ms"] = SERVER_DEFAULT_TIMEOUT_MS
