"""What validation writes is bounded, and storable on PostgreSQL."""

from __future__ import annotations

from validation.bounds import ErrorBudget, bound_error, clip, error_bytes, report_cap, storable, storable_error


def test_long_strings_are_cut_with_their_original_length() -> None:
    assert clip("short") == "short"
    cut = clip("x" * 1000)
    assert cut == "x" * 256 + "… (1000 characters)"
    error = bound_error({"message": "m" * 300, "instance_path": "/" + "k" * 2000, "schema_path": "/type"})
    assert len(error["message"]) < 300 and error["message"].endswith("(300 characters)")
    assert error["instance_path"].startswith("/kkk") and error["instance_path"].endswith("(2001 characters)")
    assert error["schema_path"] == "/type"


def test_a_budget_caps_count_and_bytes_and_stays_spent() -> None:
    small = {"message": "x" * 20}
    budget = ErrorBudget(3, 10_000)
    assert budget.take([small] * 2) == ([small] * 2, False)
    assert budget.take([small] * 2) == ([small], True)
    assert budget.take([small]) == ([], True)
    by_bytes = ErrorBudget(1000, 3 * error_bytes(small))
    kept, truncated = by_bytes.take([small] * 5)
    assert len(kept) == 3 and truncated
    assert by_bytes.take([small]) == ([], True)


def test_a_report_is_capped_by_a_multiple_of_its_upload() -> None:
    assert report_cap(0) == 1024 * 1024
    assert report_cap(10 * 1024 * 1024) == 41 * 1024 * 1024


def test_nul_and_lone_surrogates_become_visible_escapes() -> None:
    assert storable("plain") == "plain"
    assert storable("a\x00b") == "a\\u0000b"
    assert storable("x\ud800y") == "x\\ud800y"
    error = storable_error({"record": 3, "message": "'a\x00b' was unexpected", "keyword": None})
    assert error == {"record": 3, "message": "'a\\u0000b' was unexpected", "keyword": None}
