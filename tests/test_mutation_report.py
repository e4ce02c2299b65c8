"""scripts/mutation_report.py calls a survivor equivalent only when no reader could tell:
a changed message text is, a changed error code (what API callers read) is not."""

import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import mutation_report

RAISE = '            raise ValidationError({{"budget": "{message}"}}, code={code})\n'


def diff(before: str, after: str) -> str:
    return f"--- a\n+++ b\n@@ -1,2 +1,2 @@\n    def check():\n-{before}+{after}"


def test_a_changed_message_text_is_equivalent():
    before = RAISE.format(message="too big", code='"out_of_range"')
    after = RAISE.format(message="XXtoo bigXX", code='"out_of_range"')
    assert mutation_report.kind_of(diff(before, after), "discount.models.x") == "message"


def test_a_changed_or_missing_error_code_is_not():
    before = RAISE.format(message="too big", code='"out_of_range"')
    for code in ('"XXout_of_rangeXX"', '"OUT_OF_RANGE"', "None"):
        after = RAISE.format(message="too big", code=code)
        assert mutation_report.kind_of(diff(before, after), "discount.models.x") is None


def test_a_changed_code_key_of_an_error_body_is_not():
    before = '        return {"code": "declined", "message": "card declined"}\n'
    after = '        return {"code": "XXdeclinedXX", "message": "card declined"}\n'
    assert mutation_report.kind_of(diff(before, after), "payments.services.x") is None
