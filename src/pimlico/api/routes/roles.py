"""(To be written: the roles operations.)"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["roles"])
