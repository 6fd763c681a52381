"""The provider's notion of "now" (UTC).

Test hook: when the environment variable `HVREPLICA_FAKE_NOW` holds an ISO-8601 time (for example
`2030-01-01T00:00:00Z`), `now()` returns that instant instead of the system clock. It is read on
every call, so a test can set it in the environment of the `python -m pulumi.dynamic` provider
server subprocess (or change it between calls in-process) to reach renewal windows and expiry
without waiting. Do not set it in real deployments.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

FAKE_NOW_ENV = "HVREPLICA_FAKE_NOW"


def now() -> datetime:
    """The current time in UTC, or the injected `HVREPLICA_FAKE_NOW`."""
    fake = os.environ.get(FAKE_NOW_ENV)
    if not fake:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(fake.strip())
    except ValueError:
        example = "2030-01-01T00:00:00Z"
        raise ValueError(f"{FAKE_NOW_ENV}={fake!r} is not an ISO-8601 time such as {example}") from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
