"""Pimlico: self-hosted Privileged Identity Management (zero standing privilege, just in time)."""

__version__ = "0.1.0"
