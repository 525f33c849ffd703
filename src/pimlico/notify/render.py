"""Rendering a message from its template files: subject, plain text and HTML.

Each message kind has three files: ``{kind}.subject.txt``, ``{kind}.txt`` and ``{kind}.html``
(shipped in ``pimlico/notify/templates``). A deployer's directory (``PIMLICO_NOTIFY_TEMPLATES``)
is searched first, file by file, so overriding one file leaves the others shipped. HTML is
autoescaped (a justification is the requester's text, not markup); text is not. Unknown
variables are errors, so a broken template fails its test rather than sending blanks. The
subject is one line: line breaks in it are folded into spaces (no header injection).

It must not send anything or read the store: it turns a context into text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    BaseLoader,
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    select_autoescape,
)

SHIPPED = Path(__file__).parent / "templates"
"""The shipped templates."""

_SPACES = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


class Renderer:
    """Renders message kinds from the deployer's templates first, then the shipped ones."""

    def __init__(self, override: Path | None = None) -> None:
        loaders: list[BaseLoader] = []
        if override is not None:
            loaders.append(FileSystemLoader(override))
        loaders.append(FileSystemLoader(SHIPPED))
        self._env = Environment(
            loader=ChoiceLoader(loaders),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )

    def render(self, kind: str, context: Mapping[str, Any]) -> Rendered:
        subject = self._env.get_template(f"{kind}.subject.txt").render(context)
        return Rendered(
            subject=_SPACES.sub(" ", subject).strip(),
            text=self._env.get_template(f"{kind}.txt").render(context),
            html=self._env.get_template(f"{kind}.html").render(context),
        )
