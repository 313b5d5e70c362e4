"""`python -m chat_assets.privacy pseudonym NAMESPACE ID`: the pseudonym of a known id.

For an authorised holder of the key (CHAT_ASSETS_PII_KEY, CHAT_ASSETS_PII_KEY_VERSION) who
wants to join a roster of their own (agents by agent id, say) to the warehouse without
un-pseudonymising anything: it prints exactly what the warehouse stores for that id.
"""

from __future__ import annotations

import argparse
import os
import sys

from chat_assets.privacy.catalog import CATALOG
from chat_assets.privacy.pseudonyms import KEY_ENV, PrivacyKeyError, Pseudonymizer, load_key

NAMESPACES = sorted({rule.namespace for rule in CATALOG if rule.namespace})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chat_assets.privacy")
    sub = parser.add_subparsers(dest="command", required=True)
    pseudonym = sub.add_parser("pseudonym", help="print the pseudonym of an id in a namespace")
    pseudonym.add_argument("namespace", choices=NAMESPACES)
    pseudonym.add_argument("id", help="the id as UJET sends it, e.g. 317")
    args = parser.parse_args(argv)
    try:
        key, _ = load_key(os.environ.get(KEY_ENV), key_file=None, allow_create=False)
    except PrivacyKeyError as error:
        print(f"chat_assets: {error}", file=sys.stderr)
        return 2
    version = os.environ.get("CHAT_ASSETS_PII_KEY_VERSION", "").strip() or "k1"
    value = Pseudonymizer(key, version).pseudonym(args.namespace, args.id)
    if value is None:
        print(f"chat_assets: {args.id!r} is a placeholder, never pseudonymised", file=sys.stderr)
        return 2
    print(value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
