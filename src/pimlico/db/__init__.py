"""Pimlico's store: the engine, the tables, the migrations and the audit write path.

Services reach the database through this package only; nothing here holds business rules.
"""
