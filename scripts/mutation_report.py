"""The score of the last `make mutation` run, per file, as a Markdown table, and the
surviving mutants by name (`mutmut show NAME` prints one as a diff).

    .venv/bin/python scripts/mutation_report.py            # table + survivors
    .venv/bin/python scripts/mutation_report.py --fail-under 90
    .venv/bin/mutmut run $(.venv/bin/python scripts/mutation_report.py --survivors)
                                    # test the survivors again, after adding tests

Reads mutmut's result files (mutants/<file>.meta). The score counts killed and timed-out
mutants (a mutant that makes the tests hang is caught) over all checked ones. The second
score leaves out the survivors that are equivalent by their kind, found from the
mutant's diff: a changed log call (its message or arguments), or a changed message text
of an error (only the words a person reads change, not what is raised or returned).
Also equivalent by their kind: a changed HTTP header name's case (header names are
case-insensitive), a changed outcome text (the short outcome a provider event stores
for its log), and `select_related(None)` / `update_fields=None` (the same rows, more
work). The survivors reviewed by hand as equivalent are in `REVIEWED` below, each with
its reason (docs/testing.md lists them). The other survivors are listed by name, with
their diff (`--diffs`).
"""

import argparse
import json
import re
import sys
from collections import Counter
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CAUGHT = {"killed", "timeout", "caught by type check", "segfault"}


STRING = re.compile(r"""[rbuf]*("[^"\\]*(?:\\.[^"\\]*)*"|'[^'\\]*(?:\\.[^'\\]*)*')""")
MESSAGE_CALL = re.compile(r"(\bbad\(|_protocol\(|Error\(|\braise\b|message)")
# An error's code (`code="out_of_range"`, `"code": "…"`) is what API callers read in
# `error.code`: a changed code is never message text, whatever call it is in.
ERROR_CODE = re.compile(
    r"""(?:\bcode\s*=\s*|["']code["']\s*:\s*)(?:""" + STRING.pattern + "|None)"
)


HEADER_NAME = re.compile(r"""^[rbuf]*["'][A-Za-z]+(-[A-Za-z]+)+["']$""")
# Files whose functions return a short outcome text for a log (not a value any code reads).
OUTCOME_TEXT_FILES = ("payments.provider_events.",)

# Survivors reviewed by hand and found equivalent: (mutant name prefix, a fragment of an
# added line, kind). Matched on the diff, not the mutant's number, which changes with
# the code; docs/testing.md gives each reason.
REVIEWED = [
    # A cart holds at most one live reservation, that of its discount.
    ("discount.services.x_discount_make_room_for_code", "        status=Reservation", "invariant"),
    # The live reservation of a cart's discount is the newest of that discount on the
    # cart: one is made only after the cart's earlier one was released, and the earlier
    # one `_match_the_charge` brings back is consumed in the same transaction (the cart is
    # paid, so no longer changes). Reading the newest whatever its status reads the same.
    (
        "discount.services.x_discount_make_room_for_code",
        "discount_id=cart.discount_id, ).first()",
        "invariant",
    ),
    ("discount.services.x_discount_reevaluate", "        status=Reservation", "invariant"),
    ("discount.services.x_discount_reevaluate", "discount_id=discount.pk, ).first()", "invariant"),
    # A charge another than the cart's total is matched only on an unpaid cart (a paid
    # one records a duplicate), which holds no consumed use, and its live one is not it.
    (
        "discount.services.x__match_the_charge",
        "            amount=cart.subtotal - ch",
        "invariant",
    ),
    # The caller consumes the use brought back at once, which sets `updated`.
    ("discount.services.x__match_the_charge", "status=ReservationStatus.RESERVED, )", "invariant"),
    # Discount.clean() refuses a code taken in any case first; the unique and constraint
    # checks would repeat that rule, and _code_unique's arguments only matter when two
    # requests race for one code (its IntegrityError path).
    ("discount.services.x_discount_update", "validate_unique=True", "invariant"),
    ("discount.services.x_discount_update", "validate_constraints=True", "invariant"),
    ("discount.services.x_discount_update", "full_clean(validate_constraints=False)", "invariant"),
    ("discount.services.x_discount_update", "full_clean(validate_unique=False, )", "invariant"),
    ("discount.services.x_discount_update", "_code_unique(None,", "race"),
    ("discount.services.x_discount_update", "_code_unique(locked.code, )", "race"),
    # The same for a new code: Discount.clean() refuses a code taken in any case, and the
    # only unique field is the primary key, which a new code does not have yet; None is as
    # falsy as False for these flags.
    ("discount.services.x_discount_create", "full_clean(validate_unique=True,", "invariant"),
    ("discount.services.x_discount_create", "full_clean(validate_constraints=False)", "invariant"),
    ("discount.services.x_discount_create", "full_clean(validate_unique=None,", "invariant"),
    ("discount.services.x_discount_create", "validate_constraints=None)", "invariant"),
    # Only an itemized cart has lines (cart_create makes the lines of an itemized cart,
    # and a line change refuses any other): summing the lines of another finds none.
    ("discount.models.xǁDiscountǁamount_off_cart", "if (cart.itemized) or True", "invariant"),
    # The sum started at 0 instead of Decimal(0): Decimal + int is that Decimal, and the
    # sum of no lines (0, as falsy as Decimal(0)) is refused before it is used.
    ("discount.models.xǁDiscountǁamount_off_cart", "applies_to(line.sku)), )", "invariant"),
    # A code longer than 64 characters let through: every door reading a typed code caps
    # it at 64 first (the apply serializer's max_length), and no stored code is longer,
    # so the look-ups (with_code, the list's filter) find nothing either way.
    ("discount.models.x_normalize_code", "CODE_MAX_LENGTH and unicodedata", "invariant"),
    # None is as falsy as False for these flags.
    ("discount.services.x_discount_update", "=None", "invariant"),
    ("events.inbound.x__verify", "json_parse=None", "invariant"),
    # The same rows in one INSERT or in batches (Django splits them for SQLite anyway).
    (
        "discount.services.x_discount_generate_codes",
        "bulk_create(rows, batch_size=None)",
        "performance",
    ),
    ("discount.services.x_discount_generate_codes", "bulk_create(rows, )", "performance"),
    # Every caller passes a prefix (the API's default is "").
    ("discount.services.x_discount_generate_codes", 'prefix: str = "XXXX"', "invariant"),
    # The sweep's batch size, and its query's pre-filters, which the loop re-checks under
    # the row lock: performance only. The re-checks themselves only matter when another
    # process changed the row in between (the concurrency tests race them).
    (
        "discount.services.x_discount_release_expired_reservations",
        "batch: int = 501",
        "performance",
    ),
    ("discount.services.x_discount_release_expired_reservations", ").values_list(", "performance"),
    (
        "discount.services.x_discount_release_expired_reservations",
        "-expires__lte=now,",
        "performance",
    ),
    ("discount.services.x_discount_release_expired_reservations", "and cart.payment", "race"),
    ("discount.services.x_discount_release_expired_reservations", "RESERVED and reser", "race"),
    ("discount.services.x_discount_release_expired_reservations", "break", "race"),
    # The unique webhook_id answers a duplicate the same way (IntegrityError).
    ("events.inbound.x_provider_event_receive", "filter(webhook_id=None)", "invariant"),
    # Only the events being delivered have a next_attempt_at: every other status clears it.
    ("events.services.x_event_deliver", "pk=event_id, next_attempt_at__lte", "invariant"),
    ("events.services.x_events_requeue_due", "filter(next_attempt_at__lte", "invariant"),
    # values_list(flat=True) without a field name lists the primary keys too.
    ("events.services.x_events_requeue_due", "values_list(flat=True)", "invariant"),
    # The condition of a warning only.
    ("events.services.x__deliver_claimed", "    if succeeded:", "log"),
    # Arguments of a warning whose call starts beyond the diff's context.
    ("events.services.x__deliver_claimed", "status_code and error,", "log"),
    ("events.services.x__deliver_claimed", "            None,", "log"),
    # cart.refunded is written only for a refund made, which always has its completion time.
    ("events.services.x__refund_data", "if (refund.completed) or True", "invariant"),
    # 2 ** 40 times the first interval is beyond any maximum interval already.
    ("events.services.x_retry_delay", "min(attempt - 1, 41)", "invariant"),
    # The connect timeout to a shop is at most 3 or 4 s: no test can tell on a loopback.
    ("events.services.x__post", "min(4.0,", "unobservable"),
    # requests follows no redirect when allow_redirects is None (falsy).
    ("events.services.x__post", "allow_redirects=None", "invariant"),
    # A thousandth more of a measured latency, in ms.
    ("events.services.x__post", "* 1001)", "unobservable"),
    # Refund and attempt keys are unique and never empty: "" and "XXXX" both match none.
    ("payments.provider_events.x__settle_", 'idempotency_key or "XXXX"', "invariant"),
    # No code reads `replayed` of a result read from an event (the pay flow logs its own).
    ("payments.provider_events.x__refund_result", "replayed=", "unobservable"),
    ("payments.provider_events.x__payment_result", "replayed=", "unobservable"),
    # Refund keys are "refund-<uuid>" or "dup-<charge>-<n>": a key that is not text
    # matches none of them whether it is read as text or as None.
    (
        "payments.provider_events.x__refund_result",
        "idempotency_key=key if (isinstance(key, str)) or True",
        "invariant",
    ),
    # The session's tuning: with total=0 urllib3 never retries, so its read and redirect
    # flags change nothing (requests follows no redirect through urllib3 either); pool
    # sizes, and the adapter mounted or not (requests' default adapter does not retry
    # either), are performance only.
    ("utils.xǁPaymentAPIǁ_new_session", "Retry(total=0,", "invariant"),
    ("utils.xǁPaymentAPIǁ_new_session", "        )", "invariant"),
    ("utils.xǁPaymentAPIǁ_new_session", 'session.mount("XX', "performance"),
    ("utils.xǁPaymentAPIǁ_new_session", 'session.mount("HTTP', "performance"),
    ("utils.xǁPaymentAPIǁ_new_session", "pool_connections=None", "performance"),
    ("utils.xǁPaymentAPIǁ_new_session", "-        pool_connections=POOL_CONN", "performance"),
    ("utils.xǁPaymentAPIǁ_new_session", "-        pool_maxsize=POOL_MAXSIZE", "performance"),
    # Header names and media types are case-insensitive in HTTP.
    ("utils.xǁPaymentAPIǁ_exchange", '{"accept": "application/json"', "header case"),
    ("utils.xǁPaymentAPIǁ_exchange", '{"ACCEPT": "application/json"', "header case"),
    ("utils.xǁPaymentAPIǁ_exchange", '{"Accept": "APPLICATION/JSON"', "header case"),
    # The failure before any attempt: max_retries >= 0, so the loop makes an attempt, and
    # sets `failure` before anything reads it; it is never added to the history.
    ("utils.xǁPaymentAPIǁ_exchange", "# max_retries >= 0", "invariant"),
    # Arguments of the retry warning whose call starts beyond the diff's context.
    ("utils.xǁPaymentAPIǁ_exchange", "                None,", "log"),
    # A read timeout is in flight, and every reader of a call's history asks `in_flight`
    # first (a timeout error is maybe processed whatever it is told): its
    # `maybe_processed` is never read.
    ("utils.xǁPaymentAPIǁ_attempt", "maybe_processed=None, in_flight=True", "invariant"),
    ("utils.xǁPaymentAPIǁ_attempt", "maybe_processed=False, in_flight=True", "invariant"),
    # The outcome label is the reason's first part, whatever the split's limit.
    ("utils.xǁPaymentAPIǁ_observed_attempt", 'exc.reason.split(":", )[0]', "invariant"),
    ("utils.xǁPaymentAPIǁ_observed_attempt", 'exc.reason.split(":", 2)[0]', "invariant"),
    # None is as falsy as False.
    ("utils.xǁPaymentAPIǁ_parse_refund", "valid_currency = None", "invariant"),
    # Every caller passes the key it sent (text): a stored key that is None or not text
    # differs from it, and the next check refuses it.
    ("utils.xǁPaymentAPIǁ_parse_refund", "if stored_key is None and not isinstance", "invariant"),
    # A microsecond's boundary: an in-flight window or an attempt's age equal to
    # `timezone.now()` to the microsecond cannot be arranged, and nobody could tell.
    ("payments.services.x__may_land", "row.in_flight_until >= timezone.now()", "unobservable"),
    ("payments.services.x__stale", "row.updated < timezone.now() - stale_after", "unobservable"),
    # The default subject is only ever compared with "refund".
    ("payments.services.x__not_done_error", 'subject: str = "XXpaymentXX"', "invariant"),
    ("payments.services.x__not_done_error", 'subject: str = "PAYMENT"', "invariant"),
    # The cause is always a utils.PaymentProviderError, which always has a `code`.
    ("payments.services.x__not_done_error", 'getattr(cause, "code", )', "invariant"),
    # None is as falsy as False: an answer about another payment or refund leaves nothing
    # in flight.
    ("payments.services.x_payment_record_result", "ANSWER_MISMATCH, in_flight=None", "invariant"),
    ("payments.services.x_refund_record_result", "ANSWER_MISMATCH, in_flight=None", "invariant"),
    # A caller's key is never empty when stored (attempt_started skips "" and None) and the
    # column is NOT NULL: looking up a missing key finds nothing, as not looking it up.
    ("payments.services.x__try_open", "            if (request_key) or True", "invariant"),
    # All the units of a line: total × q / q is the total exactly (Decimal, 28 digits),
    # already at the minor unit, so rounding it down changes nothing.
    ("payments.services.x__paid_for", "    if units > line.quantity:", "invariant"),
    # Units given back are looked up only for the cart's own lines (line ids are unique),
    # so refunds of other carts' lines are read for nothing without the cart filter.
    (
        "payments.services.x_refund_lines_amount",
        "            refund__status__in=LINE_COUNTING_REFUND_STATUSES",
        "performance",
    ),
    # _verify refuses a request without a webhook-id first.
    ("events.inbound.x_provider_event_receive", 'or "XXXX"', "invariant"),
    # Amounts are integers of minor units: a float and a Decimal are refused alike.
    ("events.inbound.x_provider_event_receive", "simplejson.loads(body, ", "invariant"),
]


def reviewed_kind(key: str, removed: list[str], added: list[str]) -> str | None:
    """A fragment starting with "-" is looked for in a removed line, when no line is added."""
    for prefix, fragment, kind in REVIEWED:
        if not key.startswith(prefix):
            continue
        if fragment.startswith("-") and not added:
            if any(fragment[1:] in line for line in removed):
                return kind
        elif any(fragment in line for line in added):
            return kind
    return None


def kind_of(diff: str, key: str = "") -> str | None:
    """The kind of equivalent change the mutant makes ("log", "message", "header case",
    "outcome text", "performance", or a reviewed kind), else None. A changed error code is
    none of these kinds: only a hand review can call it equivalent."""
    lines = diff.splitlines()[2:]
    changed = [n for n, line in enumerate(lines) if line[:1] in "+-" and not line.startswith("@@")]
    if not changed:
        return None
    first = changed[0]
    indent = len(lines[first]) - len(lines[first][1:].lstrip())
    opener = ""
    for line in reversed(lines[:first]):
        if line[:1] == " " and len(line) - len(line[1:].lstrip()) < indent:
            opener = line
            break
    removed = [lines[n][1:] for n in changed if lines[n][0] == "-"]
    added = [lines[n][1:] for n in changed if lines[n][0] == "+"]
    if any("logger." in line for line in removed) or (
        "logger." in opener and not opener.rstrip().endswith(":")
    ):
        return "log"

    def words_only(line: str) -> str:
        return re.sub(r"\bNone\b", "S", STRING.sub("S", line)).replace(" ", "")

    same_code = [words_only(line) for line in removed] == [words_only(line) for line in added]
    codes_changed = [ERROR_CODE.findall(line) for line in removed] != [
        ERROR_CODE.findall(line) for line in added
    ]
    if codes_changed:
        return reviewed_kind(key, removed, added)
    context = " ".join([opener, *removed])
    if same_code and MESSAGE_CALL.search(context):
        return "message"
    returns_only = all(line.lstrip().startswith("return ") for line in removed)
    if same_code and returns_only and key.startswith(OUTCOME_TEXT_FILES):
        return "outcome text"
    if len(removed) == len(added) == 1:
        before = [m.group(0) for m in STRING.finditer(removed[0])]
        after = [m.group(0) for m in STRING.finditer(added[0])]
        changed = [(b, a) for b, a in zip(before, after, strict=False) if b != a]
        if (
            same_code
            and len(changed) == 1
            and changed[0][0].lower() == changed[0][1].lower()
            and HEADER_NAME.match(changed[0][0])
        ):
            return "header case"
    if any("select_related(None)" in line or "update_fields=None" in line for line in added):
        return "performance"
    return reviewed_kind(key, removed, added)


def status(exit_code: int | None) -> str:
    from mutmut.stats import status_by_exit_code

    return status_by_exit_code[exit_code]


def measured_files() -> list[str]:
    config = ConfigParser()
    config.read(ROOT / "setup.cfg")
    return [line for line in config.get("mutmut", "only_mutate").split("\n") if line]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fail-under", type=float, help="exit 1 if a file scores below this")
    parser.add_argument("--survivors", action="store_true", help="only the survivors' names")
    parser.add_argument(
        "--diffs", action="store_true", help="the diff of each unexplained survivor"
    )
    args = parser.parse_args()
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    rows, survivors, unexplained, low = [], [], [], []
    totals, kinds = Counter(), Counter()
    for name in measured_files():
        meta = ROOT / "mutants" / f"{name}.meta"
        if not meta.exists():
            rows.append(f"| `{name}` | not run | | | | | |")
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        counts = Counter(status(code) for code in codes.values())
        lived = sorted(key for key, code in codes.items() if status(code) == "survived")
        survivors += lived
        if args.survivors:
            continue
        left = []
        for key in lived:
            diff = get_diff_for_mutant(key, path=name)
            kind = kind_of(diff, key)
            if kind:
                kinds[kind] += 1
            else:
                left.append((key, diff))
        unexplained += left
        caught = sum(counts[s] for s in CAUGHT)
        score = 100 * caught / (caught + len(lived)) if caught + len(lived) else 100.0
        real = 100 * caught / (caught + len(left)) if caught + len(left) else 100.0
        if args.fail_under is not None and real < args.fail_under:
            low.append(name)
        totals.update(counts)
        totals["left"] += len(left)
        rows.append(
            f"| `{name}` | {score:.1f} % | {real:.1f} % | {caught} | {len(lived)} "
            f"| {len(left)} | {counts['no tests'] + counts['not checked']} |"
        )
    if args.survivors:
        print(" ".join(survivors))
        return 0
    caught = sum(totals[s] for s in CAUGHT)
    lived = totals["survived"]
    print(
        "| file | score | without equivalent mutants | caught | survived "
        "| of which not equivalent | not run |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    if caught + lived:
        print(
            f"| all | {100 * caught / (caught + lived):.1f} % "
            f"| {100 * caught / (caught + totals['left']):.1f} % | {caught} | {lived} "
            f"| {totals['left']} | {totals['no tests'] + totals['not checked']} |"
        )
    print(
        "\nEquivalent survivors: "
        + ", ".join(f"{kind} {count}" for kind, count in sorted(kinds.items()))
        + f". The others ({len(unexplained)}):"
    )
    for key, diff in unexplained:
        print(f"- {key}")
        if args.diffs:
            print("\n".join(f"      {line}" for line in diff.splitlines()[2:] if line[:1] in "+-"))
    if low:
        print(f"\nBelow {args.fail_under} %: {', '.join(low)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
