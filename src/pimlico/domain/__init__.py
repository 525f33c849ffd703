"""Pimlico's domain: pure Python over the standard library (and ``pimlico.errors``).

No I/O, no framework imports, no reading of the clock: time is passed in. A test walks the
imports of this package to keep it so.
"""
