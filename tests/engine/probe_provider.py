"""A provider that reports what it received, to test the engine harness itself.

It touches nothing but its own process: each call echoes its inputs with their Python types and the
thread it ran on, so the harness tests can see the engine's wire shapes (floats for integers,
old outputs to diff/update/read/delete, replace order) as the real server delivers them.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from pulumi.dynamic import CheckResult, CreateResult, DiffResult, ReadResult, ResourceProvider, UpdateResult

_counter = iter(range(1, 1_000_000))
_counter_lock = threading.Lock()


def _next_id() -> str:
    with _counter_lock:
        return f"probe-{next(_counter)}"


class ProbeProvider(ResourceProvider):
    """`size` replaces, `label` updates in place, `sleep` delays create (for concurrency tests)."""

    def check(self, olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        print(f"check olds={sorted(olds)} size_type={type(news.get('size')).__name__}")
        return CheckResult(news, [])

    def diff(self, id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        print(f"diff {id} olds_have_outputs={'serial' in olds}")
        changed = [k for k in ("size", "label") if olds.get(k) != news.get(k)]
        return DiffResult(changes=bool(changed), replaces=[k for k in changed if k == "size"])

    def create(self, props: dict[str, Any]) -> CreateResult:
        started = time.monotonic()
        time.sleep(float(props.get("sleep", 0)))
        id_ = _next_id()
        print(f"create {id_}")
        outs = {
            **props,
            "serial": id_,
            "thread": threading.current_thread().name,
            "started": started,
            "finished": time.monotonic(),
            "size_type": type(props.get("size")).__name__,
        }
        return CreateResult(id_, outs)

    def update(self, id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        print(f"update {id}")
        return UpdateResult({**news, "serial": olds["serial"]})

    def read(self, id: str, props: dict[str, Any]) -> ReadResult:
        print(f"read {id}")
        # Reports a label "read from the remote side" that drifted, in outputs and inputs alike.
        outs = {**props, "refreshed": True, "label": "drifted"}
        return ReadResult(id, outs, {"size": props["size"], "label": "drifted"})

    def delete(self, id: str, props: dict[str, Any]) -> None:
        print(f"delete {id} serial={props['serial']}")
