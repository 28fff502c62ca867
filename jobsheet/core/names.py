"""The one rule for the names of users and accounts, enforced wherever a name enters.

A name is 2 to 63 characters: a lower-case letter, then lower-case letters, digits or ``-``. It
becomes part of workflow ids, object keys and URLs, so nothing else (no ``/``, ``.``, ``_`` or
upper case) may pass: ``../../../escape-acct`` is refused before it reaches any workflow.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import StringConstraints

NAME_RULE = r"^[a-z][a-z0-9-]{1,62}$"
NAME_PATTERN = re.compile(NAME_RULE)
NAME_HELP = "2-63 characters: a lower-case letter, then lower-case letters, digits or '-'"

Name = Annotated[str, StringConstraints(pattern=NAME_RULE)]
"""A user or account name, as a pydantic field type (422 names the field when it is wrong)."""


class InvalidName(ValueError):
    """A user or account name that breaks the rule."""


def check_name(value: str, *, what: str = "name") -> str:
    """``value`` if it is a valid user or account name, else :class:`InvalidName`."""
    if not isinstance(value, str) or not NAME_PATTERN.match(value):
        raise InvalidName(f"invalid {what} {value!r}: use {NAME_HELP}")
    return value
