"""Asset checks: their specs (`specs`), and one module per family of checks, each a function
from rows or one SQL query to a check result.

Metadata names culprits by ids and values of non-personal columns only, a few at a time
(`culprits`).
"""
