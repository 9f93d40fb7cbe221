"""``bounce-processor verp make|verify``: signed return paths (processor.verp).

``make`` prints the envelope sender to use for one recipient; ``verify`` checks one and exits 0
when it is valid, 1 when it is not. Secrets come from the ``[verp]`` settings and never print.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("verp", help="signed VERP return paths: make one, verify one",
                       description="Make and verify signed return paths (settings: the [verp] section).")
    actions = p.add_subparsers(dest="verp_action", metavar="ACTION")
    actions.required = True
    mk = actions.add_parser("make", help="print the signed return path to use when mailing RECIPIENT")
    mk.add_argument("recipient", metavar="RECIPIENT")
    mk.add_argument("--tag", default="", help="a campaign or message id to sign too (A-Z a-z 0-9 _ ., up to 32)")
    mk.add_argument("--sender-domain", help="domain of the return path (default: verp.sender_domain)")
    mk.set_defaults(handler=run_make)
    ve = actions.add_parser("verify", help="check a return path (exit 0 valid, 1 not)")
    ve.add_argument("address", metavar="ADDRESS")
    ve.add_argument("--json", action="store_true", help="print the result as one JSON object")
    ve.set_defaults(handler=run_verify)


def _secrets(args: argparse.Namespace) -> tuple[list[str], object]:
    from processor.commands import CommandError, settings_from
    from processor.config import ConfigError

    settings = settings_from(args)
    try:
        secrets = settings.verp.all_secrets()
    except ConfigError as exc:
        raise CommandError(str(exc)) from None
    if not secrets:
        raise CommandError("no VERP secret is configured: set verp.secrets, verp.secrets_file "
                           "or BOUNCE_VERP__SECRETS")
    return secrets, settings.verp


def run_make(args: argparse.Namespace) -> int:
    from processor.commands import CommandError
    from processor.config import VerpSettings
    from processor.verp import VerpError, make_return_path

    secrets, verp = _secrets(args)
    assert isinstance(verp, VerpSettings)
    domain = args.sender_domain or verp.sender_domain
    if not domain:
        raise CommandError("no sender domain: set verp.sender_domain or give --sender-domain")
    try:
        print(make_return_path(args.recipient, secret=secrets[0], sender_domain=domain, prefix=verp.prefix,
                               tag=args.tag))
    except VerpError as exc:
        raise CommandError(str(exc)) from None
    return 0


def run_verify(args: argparse.Namespace) -> int:
    from processor.config import VerpSettings
    from processor.verp import verify_return_path

    secrets, verp = _secrets(args)
    assert isinstance(verp, VerpSettings)
    result = verify_return_path(args.address, secrets=secrets, max_age_days=verp.max_age_days)
    if args.json:
        print(json.dumps({"valid": result.valid, "recipient": result.recipient, "tag": result.tag,
                          "reason": result.reason}))
    elif result.valid:
        print(f"valid: recipient {result.recipient}" + (f", tag {result.tag}" if result.tag else ""))
    else:
        print(f"invalid: {result.reason}")
    return 0 if result.valid else 1
