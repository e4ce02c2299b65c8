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
The other survivors are listed by name, with their diff (`--diffs`).
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


def kind_of(diff: str) -> str | None:
    """ "log" or "message" when the mutant only changes what a person reads, else None."""
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
    context = " ".join([opener, *removed])
    if same_code and MESSAGE_CALL.search(context):
        return "message"
    return None


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
            kind = kind_of(diff)
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
        "| file | score | without log and message mutants | caught | survived "
        "| of which not log or message | not run |"
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
        f"\nSurvivors that only change a log call: {kinds['log']}; only an error's "
        f"message text: {kinds['message']}. The others ({len(unexplained)}):"
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
