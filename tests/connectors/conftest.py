"""Fixtures of the connector tests: ``slapd``, a private OpenLDAP server (``slapd.py``)."""

from __future__ import annotations

from tests.connectors.slapd import slapd

__all__ = ["slapd"]
