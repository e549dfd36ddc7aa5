"""The decision every process makes before applying its config file to a shared store."""

from __future__ import annotations

from broker.config.convergence import decide, file_digest
from broker.config.repository import AppliedFile

A = AppliedFile("aa", "2026-11-29.2", "host/a", "2026-11-29T10:00:00.000000Z", 7)


def test_the_first_file_is_applied_and_the_same_file_never_again():
    assert decide(None, "aa", "1", me="host/b", edited=False).apply
    for edited in (False, True):
        same = decide(A, "aa", "0", me="host/b", edited=edited)
        assert not same.apply and same.warning is None


def test_at_start_an_older_file_is_kept_out_and_a_newer_one_replaces_with_a_warning():
    older = decide(A, "bb", "2026-11-29.1", me="host/b", edited=False)
    assert not older.apply and older.warning is not None and "host/a" in older.warning
    newer = decide(A, "bb", "2026-11-29.3", me="host/b", edited=False)
    assert newer.apply and newer.warning is not None and "replaces" in newer.warning
    assert decide(A, "bb", "2026-11-29.3", me="host/a", edited=False).warning is None


def test_an_edit_is_applied_whatever_its_revision():
    edit = decide(A, "bb", "0", me="host/b", edited=True)
    assert edit.apply and edit.warning is not None and "last one applied wins" in edit.warning
    assert decide(A, "bb", "0", me="host/a", edited=True) == decide(
        None, "bb", "0", me="host/a", edited=True)


def test_the_digest_ignores_key_order():
    one = {"routes": [{"name": "r", "targets": ["queue:a"], "filter": {"exact": {"a": 1}}}]}
    two = {"routes": [{"filter": {"exact": {"a": 1}}, "targets": ["queue:a"], "name": "r"}]}
    assert file_digest(one) == file_digest(two)
    assert file_digest(one) != file_digest({"routes": []})
