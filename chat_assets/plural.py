"""Counts in console and log lines, in English: `1 page`, `2 pages`."""


def counted(number: int, noun: str, plural: str | None = None) -> str:
    """`number` and `noun`, the noun plural unless the number is 1 (`plural` when the noun does
    not take a plain s)."""
    return f"{number} {noun if number == 1 else plural or noun + 's'}"
