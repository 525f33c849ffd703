"""Types of the C extension ``_decide.c`` (the decision index's hot path)."""

from collections.abc import Callable
from datetime import datetime
from typing import Any

class Decider:
    def __init__(
        self,
        index: object,
        packed: PackedMap,
        fallback: Callable[[str, str, str, datetime], Any],
        ancestors: Callable[[str], tuple[str, ...]],
        candidates: Callable[[str], tuple[str, ...]],
        decision_type: type,
        grant_type: type,
        granted: str,
        denied: str,
    ) -> None: ...
    def __call__(self, principal_id: str, permission: str, scope: str, at: datetime) -> Any: ...

class PackedMap:
    def put(self, packed: object) -> None: ...
    def get(self, principal_id: str) -> object | None: ...
    def pop(self, principal_id: str) -> None: ...
    def __len__(self) -> int: ...

def pack(principal_id: str, view: tuple[Any, ...], own: dict[str, Any] | None) -> object | None: ...
def timestamp(at: datetime) -> float: ...
