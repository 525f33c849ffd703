"""(To be written: the directory operations.)"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["directory"])
