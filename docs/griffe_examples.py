"""Griffe extension: read a Google-style ``Example:`` section as doctest examples.

The house style writes ``Example:`` (singular, as Google's guide does); griffe parses only
``Examples:`` as examples and renders the singular as an admonition of Markdown, where doctest
lines such as ``x[0]["role"]`` read as reference links. Renaming the section here keeps the
sources in the house style and the rendered page a code block.
"""

from __future__ import annotations

import re

import griffe

_SINGULAR = re.compile(r"^(\s*)Example:\s*$", re.M)


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` to ``Examples:`` in every docstring before it is parsed."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: object) -> None:  # noqa: D102
        if obj.docstring is not None:
            obj.docstring.value = _SINGULAR.sub(r"\1Examples:", obj.docstring.value)
