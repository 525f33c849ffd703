"""Both decision engines at once: the C path (where this installation built it) and the
pure-Python one must give the same decision, explanation included."""

from __future__ import annotations

from datetime import datetime

from pimlico.domain.decisions import Decision, DecisionIndex


def _seen(decision: Decision) -> tuple[object, ...]:
    grant = decision.grant
    explained = (
        None
        if grant is None
        else (
            grant.assignment_id,
            grant.role_id,
            grant.scope,
            grant.pattern,
            grant.holder_id,
            grant.chain,
            grant.start,
            grant.end,
        )
    )
    return (
        decision.allowed,
        decision.principal_id,
        decision.permission,
        decision.scope,
        decision.at,
        decision.reason,
        decision.revision,
        explained,
    )


def decide_both(
    index: DecisionIndex, principal_id: str, permission: str, scope: str, at: datetime
) -> Decision:
    """``index.decide``, checked against the pure-Python engine on the same index."""
    decision = index.decide(principal_id, permission, scope, at)
    pure = index._decide(principal_id, permission, scope, at)
    assert _seen(decision) == _seen(pure), (principal_id, permission, scope, at)
    return decision
