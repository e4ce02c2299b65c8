"""The score of the last `make mutation` run, per file, as a Markdown table, and the
surviving mutants by name (`mutmut show NAME` prints one as a diff).

    .venv/bin/python scripts/mutation_report.py            # table + survivors
    .venv/bin/python scripts/mutation_report.py --fail-under 90
    .venv/bin/mutmut run $(.venv/bin/python scripts/mutation_report.py --survivors)
                                    # test the survivors again, after adding tests

Reads mutmut's result files (mutants/<file>.meta). The score counts killed and timed-out
mutants (a mutant that makes the tests hang is caught) over all checked ones.
"""

import argparse
import json
import sys
from collections import Counter
from configparser import ConfigParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CAUGHT = {"killed", "timeout", "caught by type check", "segfault"}


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
    args = parser.parse_args()

    rows, survivors, low = [], [], []
    totals = Counter()
    for name in measured_files():
        meta = ROOT / "mutants" / f"{name}.meta"
        if not meta.exists():
            rows.append(f"| `{name}` | not run | | | | |")
            continue
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        counts = Counter(status(code) for code in codes.values())
        caught = sum(counts[s] for s in CAUGHT)
        checked = caught + counts["survived"]
        score = 100 * caught / checked if checked else 100.0
        if args.fail_under is not None and score < args.fail_under:
            low.append(name)
        totals.update(counts)
        rows.append(
            f"| `{name}` | {score:.1f} % | {caught} | {counts['survived']} "
            f"| {counts['no tests']} | {counts['not checked']} |"
        )
        survivors += sorted(key for key, code in codes.items() if status(code) == "survived")
    if args.survivors:
        print(" ".join(survivors))
        return 0
    caught = sum(totals[s] for s in CAUGHT)
    checked = caught + totals["survived"]
    print("| file | score | caught | survived | no test runs it | not checked yet |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    if checked:
        print(
            f"| all | {100 * caught / checked:.1f} % | {caught} | {totals['survived']} "
            f"| {totals['no tests']} | {totals['not checked']} |"
        )
    print("\nSurvivors:" if survivors else "\nNo survivors.")
    for key in survivors:
        print(f"- {key}")
    if low:
        print(f"\nBelow {args.fail_under} %: {', '.join(low)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
