"""(To be written: the requests operations.)"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["requests"])
