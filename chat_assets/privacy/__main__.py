"""`python -m chat_assets.privacy`: the key holder's commands, each recorded in the ledger.

- `pseudonym NAMESPACE ID`: the pseudonym of a known id, for an authorised holder of the key
  who wants to join a roster of their own (agents by agent id, say) to the warehouse without
  un-pseudonymising anything: it prints exactly what the warehouse stores for that id.
- `erase end_user|crm_contact ID --ref REF [--mode unlink|delete] [--also-future] [--dry-run]`:
  erases one data subject at once, in one transaction (see `chat_assets.privacy.erasure`), and
  prints rows per table and the ref: never the id, never a pseudonym.
- `rotate [--ref REF] [--dry-run]`: re-keys every stored pseudonym under the current key, in
  one transaction, without fetching anything (see `chat_assets.privacy.rotation`), and prints
  rows per table.

All read the production settings: CHAT_ASSETS_PII_KEY (with _VERSION and _PREVIOUS_KEYS),
CHAT_ASSETS_DATABASE_URL and CHAT_ASSETS_SCHEMA. With `--tenant NAME` they work on that tenant
of the tenants file (CHAT_ASSETS_TENANTS_FILE, or `--tenants-file PATH`) instead: its schema,
and the variables its document names for its key, previous keys and warehouse.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import NoReturn

import psycopg
import sqlalchemy as sa

from chat_assets.privacy import ledger
from chat_assets.privacy.catalog import CATALOG
from chat_assets.privacy.erasure import SUBJECT_NAMESPACES, ErasureRefused, Request, erase
from chat_assets.privacy.ledger import LedgerRefError, checked_ref
from chat_assets.privacy.pseudonyms import PrivacyKeyError, Pseudonymizer
from chat_assets.privacy.rotation import RotationRefused, rotate
from chat_assets.privacy.suppression import Mode
from chat_assets.privacy.target import Target, target_for
from chat_assets.settings import SettingsError, said
from chat_assets.warehouse import connection

NAMESPACES = sorted({rule.namespace for rule in CATALOG if rule.namespace})


class _Refused(Exception):
    """A reason to stop before anything is done; the message holds no id and no secret."""


class _Parser(argparse.ArgumentParser):
    """argparse, without echoing what it could not use: on a wrong command line an id may sit
    where a namespace belongs, or after the arguments it expects."""

    def error(self, message: str) -> NoReturn:
        if message.startswith("unrecognized arguments"):
            message = "more arguments than the command takes (not shown: one may be an id)"
        # "invalid choice: '4711893' (choose from ...)": the choices, without the word given.
        message = re.sub(r"invalid choice: .*? \(choose", "invalid choice (choose", message)
        super().error(message)


def _namespace(choices: list[str]) -> Callable[[str], str]:
    def read(value: str) -> str:
        if value not in choices:
            # Not shown: it may be the id, given without its namespace.
            raise argparse.ArgumentTypeError(
                f"the namespace comes first, one of {', '.join(choices)}, then the id"
            )
        return value

    return read


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m chat_assets.privacy")
    # After the command, as each of its own options: `erase ... --tenant acme`.
    where = _Parser(add_help=False)
    where.add_argument(
        "--tenant",
        metavar="NAME",
        help="work on this tenant of the tenants file: its schema, key and warehouse",
    )
    where.add_argument(
        "--tenants-file",
        metavar="PATH",
        help="the tenants file (default: CHAT_ASSETS_TENANTS_FILE)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    pseudonym = sub.add_parser(
        "pseudonym", parents=[where], help="print the pseudonym of an id in a namespace"
    )
    pseudonym.add_argument(
        "namespace", type=_namespace(NAMESPACES), metavar="{" + ",".join(NAMESPACES) + "}"
    )
    pseudonym.add_argument("id", help="the id as UJET sends it, e.g. 317")
    pseudonym.add_argument("--ref", help="why: the ticket of the task, kept in the ledger")
    erase_ = sub.add_parser(
        "erase", parents=[where], help="erase one data subject from the warehouse"
    )
    erase_.add_argument(
        "namespace",
        type=_namespace(list(SUBJECT_NAMESPACES)),
        metavar="{" + ",".join(SUBJECT_NAMESPACES) + "}",
    )
    erase_.add_argument("id", help="the subject's id as UJET sends it (never printed or stored)")
    erase_.add_argument("--ref", required=True, help="the request's ticket, e.g. DSR-2026-0012")
    erase_.add_argument("--mode", choices=[m.value for m in Mode], default=Mode.UNLINK.value)
    erase_.add_argument(
        "--also-future",
        action="store_true",
        help="also unlink or drop chats the subject opens after the erasure",
    )
    erase_.add_argument("--dry-run", action="store_true", help="print what would change, only")
    rotate_ = sub.add_parser(
        "rotate",
        parents=[where],
        help="re-key every stored pseudonym under the current key (nothing fetched)",
    )
    rotate_.add_argument("--ref", help="the change ticket of the rotation, kept in the ledger")
    rotate_.add_argument("--dry-run", action="store_true", help="print what would change, only")
    return parser


def _pseudonymizer(target: Target) -> Pseudonymizer:
    try:
        return target.pseudonymizer()
    except PrivacyKeyError as error:
        raise _Refused(str(error)) from None


def _pseudonym_of(pseudonymizer: Pseudonymizer, namespace: str, value: str) -> str:
    pseudonym = pseudonymizer.pseudonym(namespace, value)
    if pseudonym is None:
        raise _Refused("the id is empty or a placeholder (0, string, null), never pseudonymised")
    return pseudonym


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        target = target_for(args.tenant, args.tenants_file)
        settings, keys = target.settings, target.keys
        if not settings.database_url:
            raise _Refused(
                f"{keys.label(target.database_url_env)} is not set: every use of this command "
                f"is recorded in the warehouse's privacy ledger (and {keys.key} is the key to use)"
            )
        ref = None if args.ref is None else checked_ref(args.ref, getattr(args, "id", None))
        pseudonymizer = _pseudonymizer(target)
        engine = connection.engine_for(settings.database_url)
        if target.tenant is not None:
            # On stderr: the pseudonym command's output stays the pseudonym alone.
            print(f"chat_assets: tenant {target.tenant}, schema {settings.schema}", file=sys.stderr)
        if args.command == "rotate":
            connection.check_reachable(engine, keys.label(target.database_url_env))
            rotated = rotate(
                engine, settings.schema, pseudonymizer, ref=ref, dry=args.dry_run, names=keys
            )
            print(rotated.report())
            return 0
        pseudonym = _pseudonym_of(pseudonymizer, args.namespace, args.id)
        connection.check_reachable(engine, keys.label(target.database_url_env))
        if args.command == "pseudonym":
            with connection.cursor_for(engine, transaction=True) as cursor:
                ledger.ensure(cursor, settings.schema)
                ledger.append(
                    cursor,
                    settings.schema,
                    "pseudonym",
                    ref=ref,
                    namespace=args.namespace,
                    key_version=pseudonymizer.version,
                )
            print(pseudonym)
            return 0
        assert ref is not None
        request = Request(
            args.namespace,
            pseudonym,
            ref,
            Mode(args.mode),
            args.also_future,
            fingerprints=pseudonymizer.fingerprints,
            earlier=pseudonymizer.every_version(args.namespace, args.id)[:-1],
        )
        outcome = erase(
            engine,
            settings.schema,
            request,
            timezone=settings.timezone,
            interval_minutes=settings.interval_minutes,
            dry=args.dry_run,
        )
    except (
        _Refused,
        SettingsError,
        LedgerRefError,
        RotationRefused,
        ErasureRefused,
        connection.WarehouseUnreachable,
    ) as error:
        print(said(error), file=sys.stderr)
        return 2
    except (psycopg.Error, sa.exc.DBAPIError) as error:
        # PostgreSQL quotes values in its errors: say what failed, never with what.
        cause = error.orig if isinstance(error, sa.exc.DBAPIError) else error
        print(
            f"chat_assets: PostgreSQL refused ({type(cause).__name__}, SQLSTATE "
            f"{getattr(cause, 'sqlstate', None)}); the transaction was rolled back, nothing "
            "changed",
            file=sys.stderr,
        )
        return 2
    print(outcome.report())
    return 0


if __name__ == "__main__":
    sys.exit(main())
