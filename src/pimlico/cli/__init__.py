"""The ``pimlico`` command line: drive the whole core locally, as the operator.

Every command is a thin translation: it turns names into ids (``services.resolve``), calls
one use case, and prints the result (Rich tables for lists, one line per write with its
revision). It never touches the ORM and holds no business rules. Settings come from
``PIMLICO_*`` environment variables; every command acts as ``Actor.operator("cli")``.

Exit codes: 0 done (or allowed), 1 answered "no" (``check`` denied, ``audit verify``
broken), 2 refused (one red ``error: <code>: <message>`` line on stderr).
"""

from __future__ import annotations

import typer

from pimlico.cli import accounts as account_commands
from pimlico.cli import (
    assignments,
    audit,
    db,
    decisions,
    demo,
    directory,
    me,
    mfa,
    roles,
    serve,
    worker,
)
from pimlico.cli import connectors as connector_commands
from pimlico.cli import requests as request_commands
from pimlico.cli._common import handles_errors

app = typer.Typer(
    name="pimlico",
    help="Pimlico: privileged identity management. Zero standing privilege, just in time.",
    no_args_is_help=True,
    add_completion=False,
    # Locals may hold connection URLs with passwords: never print them in a traceback.
    pretty_exceptions_show_locals=False,
)
app.add_typer(db.app, name="db")
directory.users.command("set-password")(handles_errors(account_commands.set_password))
app.add_typer(directory.users, name="user")
app.add_typer(directory.service_accounts, name="service-account")
app.add_typer(directory.groups, name="group")
app.add_typer(roles.role_app, name="role")
app.add_typer(roles.settings_app, name="settings")
app.add_typer(assignments.app, name="assignment")
app.add_typer(audit.app, name="audit")
app.add_typer(demo.app, name="demo")
app.add_typer(mfa.app, name="mfa")
app.add_typer(me.app, name="me")
app.add_typer(connector_commands.app, name="connectors")
app.command("reconcile")(handles_errors(connector_commands.reconcile))
app.command("check")(handles_errors(decisions.check))
app.command("explain")(handles_errors(decisions.explain))
app.command("access")(handles_errors(decisions.access))
app.command("activate")(handles_errors(request_commands.activate))
app.command("deactivate")(handles_errors(request_commands.deactivate))
app.command("extend")(handles_errors(request_commands.extend))
app.command("renew")(handles_errors(request_commands.renew))
app.command("requests")(handles_errors(request_commands.list_requests))
app.command("approve")(handles_errors(request_commands.approve))
app.command("deny")(handles_errors(request_commands.deny))
app.command("cancel")(handles_errors(request_commands.cancel))
app.command("worker")(handles_errors(worker.worker))
app.command("serve")(handles_errors(serve.serve))
app.command("bootstrap-admin")(handles_errors(account_commands.bootstrap_admin))


def main() -> None:
    """The console script ``pimlico``."""
    app()


__all__ = ["app", "main"]
