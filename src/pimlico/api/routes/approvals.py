"""(To be written: the approvals operations.)"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["approvals"])
