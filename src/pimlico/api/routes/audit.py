"""(To be written: the audit operations.)"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["audit"])
