"""The one error type for bad input.

Raised wherever a value a user gave (an argument, a file, a request field) is unusable,
with a message that names it. The CLI turns it into exit code 2, the served models into
INVALID_ARGUMENT; anything else that escapes is a bug or a broken environment.
"""
from __future__ import annotations


class InvalidInput(ValueError):
    """A value from the user that cannot be used; the message says which and why."""
