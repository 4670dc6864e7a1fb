"""A check: the one shape of `doctor`'s lines, `/readyz`'s checks and a notification target's
check: what was checked, how it stands, one line saying why. Each output keeps its own JSON."""

from __future__ import annotations

from typing import NamedTuple

OK, WARN, FAIL, INFO = "ok", "warn", "fail", "info"


class Check(NamedTuple):
    name: str  # doctor: its section ("secrets", "notify", …); /readyz and targets: the thing
    status: str  # OK, WARN, FAIL or INFO
    message: str

    @classmethod
    def of(cls, name: str, passed: bool, message: str) -> Check:
        return cls(name, OK if passed else FAIL, message)

    @property
    def ok(self) -> bool:
        return self.status != FAIL
