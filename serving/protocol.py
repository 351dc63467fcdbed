"""The kind of a served error, written at the start of its message.

tritonserver 2.51 loses an error's gRPC code in two places: a BLS caller gets the called
model's message but reads INTERNAL, and a stream (opened without the `triton_grpc_error`
header, see docs/serving.md) gets the message alone. So every error our models send starts
with its kind, and the BLS caller (serving.bls) and the client (serving.client) read the
status back from there.
"""
from __future__ import annotations

INVALID_PREFIX = "invalid input: "  # the caller must fix the request: INVALID_ARGUMENT
UNAVAILABLE_PREFIX = "unavailable: "  # a draining server turned it away: UNAVAILABLE
INTERNAL_PREFIX = "internal error: "  # anything else (a bug, a broken environment): INTERNAL
STATUS_BY_PREFIX = {INVALID_PREFIX: "StatusCode.INVALID_ARGUMENT", UNAVAILABLE_PREFIX: "StatusCode.UNAVAILABLE",
                    INTERNAL_PREFIX: "StatusCode.INTERNAL"}


def status_of(message: str) -> str | None:
    """The gRPC status (as tritonclient spells it) that a marked message stands for."""
    return next((s for p, s in STATUS_BY_PREFIX.items() if message.startswith(p)), None)
