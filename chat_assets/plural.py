"""Counts in console and log lines, in English: `1 page`, `2 pages`."""


def noun(number: int, singular: str, plural: str | None = None) -> str:
    """The noun for `number` of it: plural unless the number is 1 (`plural` when the noun does
    not take a plain s)."""
    return singular if number == 1 else plural or singular + "s"


def counted(number: int, singular: str, plural: str | None = None) -> str:
    """`number` and its noun."""
    return f"{number} {noun(number, singular, plural)}"
