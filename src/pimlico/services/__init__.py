"""Use cases: one keyword-only function per verb, one transaction each.

Every entry point (CLI, API, portal, worker) calls these; none of them touches the ORM. A
write use case takes the store's write lock first (``writing``), then loads, checks and acts,
records its audit events, and returns the revision it wrote.
"""
