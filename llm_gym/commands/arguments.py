"""Argument parsing shared by the subcommands."""

from __future__ import annotations

import json
from typing import Any


def json_object(text: str, flag: str = "--env-kwargs") -> dict[str, Any]:
    """Parse a command-line JSON object, naming ``flag`` in the error when it is not one.

    Example:
        >>> json_object('{"digits": 2}')
        {'digits': 2}
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{flag} is not valid JSON ({err}): {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object, got {text!r}")
    return value
