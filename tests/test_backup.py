"""Online backup under load, restore with its refusals, upgrades and the store check."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from pathlib import Path

import aiohttp
import pytest

from tests.broker_process import ROOT, BrokerProcess
from tests.ops_support import FIXTURES, load_sql, opsbus, publish_batch, read_db


async def test_backup_under_load_restores_every_event_acknowledged_before_it(
    tmp_path: Path, http: aiohttp.ClientSession
):
    proc = BrokerProcess(tmp_path / "data").start()
    try:
        for _ in range(16):  # ~8 MB: the snapshot takes several steps of the backup API
            await publish_batch(http, proc.url, 500, size=600)
        acked: set[int] = set()
        busy = asyncio.Event()
        stop = asyncio.Event()

        async def publisher(worker: int) -> None:
            n = 0
            while not stop.is_set():
                acked.update(await publish_batch(http, proc.url, 20, source=f"load/{worker}"))
                n += 1
                if n == 5:
                    busy.set()

        workers = [asyncio.create_task(publisher(w)) for w in range(4)]
        await busy.wait()
        before = set(acked)
        backup = tmp_path / "backups" / "opsbus.db"
        cli = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "broker", "backup", str(backup), "--url", proc.url,
            "--json", stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)})
        out, err = await cli.communicate()
        during = len(acked) - len(before)
        stop.set()
        await asyncio.gather(*workers)
    finally:
        proc.stop()
    assert cli.returncode == 0, err.decode()
    summary = json.loads(out)
    assert during > 0, "publishers kept being acknowledged while the backup ran"
    assert summary["verified"] and summary["last_seq"] >= max(before)
    restored = tmp_path / "restored"
    result = opsbus("restore", str(backup), "--data-dir", str(restored), "--json")
    assert result.returncode == 0, result.stderr
    db = restored / "opsbus.db"
    assert read_db(db, "PRAGMA integrity_check") == [("ok",)]
    seqs = {row[0] for row in read_db(db, "SELECT seq FROM events")}
    assert before <= seqs
    assert len(seqs) == summary["events"] == json.loads(result.stdout)["events"]
    check = opsbus("store", "check", "--data-dir", str(restored))
    assert check.returncode == 0 and ": ok (" in check.stdout, check.stdout + check.stderr


async def test_the_backup_endpoint_answers_the_database_file_and_leaves_nothing_behind(
    tmp_path: Path, http: aiohttp.ClientSession
):
    proc = BrokerProcess(tmp_path / "data").start()
    try:
        seqs = await publish_batch(http, proc.url, 10)
        async with http.post(proc.url + "/v1/admin/backup") as resp:
            assert resp.status == 200
            assert resp.content_type == "application/vnd.sqlite3"
            assert resp.headers["Opsbus-Backup-Last-Seq"] == str(seqs[-1])
            assert resp.headers["Opsbus-Backup-Events"] == "10"
            body = await resp.read()
        assert body.startswith(b"SQLite format 3\x00")
        assert len(body) == int(resp.headers["Content-Length"])
        assert not list((tmp_path / "data").glob(".backup-*"))
        async with http.post(proc.url + "/v1/admin/store/check") as resp:
            report = await resp.json()
        assert report["ok"] and report["events"] == 10 and "integrity_check" in report["checks"]
    finally:
        proc.stop()


def test_restore_refuses_a_running_broker_a_newer_schema_and_what_is_not_a_store(
    tmp_path: Path
):
    source = tmp_path / "source"
    proc = BrokerProcess(source).start()
    proc.stop()
    backup = tmp_path / "good.db"
    assert opsbus("backup", str(backup), "--data-dir", str(source)).returncode == 0

    running = BrokerProcess(tmp_path / "live").start()
    try:
        refused = opsbus("restore", str(backup), "--data-dir", str(running.data_dir),
                         "--force")
        assert refused.returncode == 1
        assert "in use by another opsbus process" in refused.stderr
        assert refused.stderr.count("\n") == 1
    finally:
        running.stop()

    newer = tmp_path / "newer.db"
    newer.write_bytes(backup.read_bytes())
    conn = sqlite3.connect(newer)
    conn.execute("PRAGMA user_version=999")
    conn.close()
    refused = opsbus("restore", str(newer), "--data-dir", str(tmp_path / "fresh"))
    assert refused.returncode == 1
    assert "schema version 999, newer than this opsbus" in refused.stderr
    assert not (tmp_path / "fresh" / "opsbus.db").exists()

    stranger = tmp_path / "stranger.db"
    sqlite3.connect(stranger).execute("CREATE TABLE t (x)").connection.close()
    refused = opsbus("restore", str(stranger), "--data-dir", str(tmp_path / "fresh"))
    assert refused.returncode == 1 and "not an opsbus store" in refused.stderr
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    refused = opsbus("restore", str(text), "--data-dir", str(tmp_path / "fresh"))
    assert refused.returncode == 1 and "not an SQLite database" in refused.stderr

    occupied = opsbus("restore", str(backup), "--data-dir", str(source))
    assert occupied.returncode == 1 and "--force" in occupied.stderr
    replaced = opsbus("restore", str(backup), "--data-dir", str(source), "--force")
    assert replaced.returncode == 0, replaced.stderr
    assert len(list(source.glob("opsbus.db.before-restore-*"))) == 1


def test_a_broker_refuses_a_newer_store_and_a_data_directory_in_use(tmp_path: Path):
    proc = BrokerProcess(tmp_path / "data").start()
    try:
        second = BrokerProcess(tmp_path / "data")
        with pytest.raises(RuntimeError, match="in use by another opsbus process"):
            second.start()
    finally:
        proc.stop()
    conn = sqlite3.connect(tmp_path / "data" / "opsbus.db")
    conn.execute("PRAGMA user_version=999")
    conn.close()
    with pytest.raises(RuntimeError, match="newer than this opsbus") as refused:
        BrokerProcess(tmp_path / "data").start()
    assert "Traceback" not in str(refused.value)


async def test_a_store_from_the_previous_release_restores_upgraded_and_serves(
    tmp_path: Path, http: aiohttp.ClientSession
):
    backup = load_sql(FIXTURES / "store-0.1.0.sql", tmp_path / "release-0.1.0.db")
    result = opsbus("restore", str(backup), "--data-dir", str(tmp_path / "data"), "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["events"] == 124
    proc = BrokerProcess(tmp_path / "data").start()
    try:
        async with http.get(proc.url + "/v1/todos/21") as resp:
            item = await resp.json()
        assert (item["state"], item["owner"]) == ("claimed", "alice")
        assert [h["note"] for h in item["history"] if h["note"]] == ["looking"]
        async with http.get(proc.url + "/v1/events", params={"after": "0", "limit": "1000"}
                            ) as resp:
            assert len((await resp.json())["events"]) == 124
        async with http.post(proc.url + "/v1/subscriptions/deploy-feed/receive",
                             json={"max": 50, "wait_s": 0}) as resp:
            assert resp.status == 200
            received = await resp.json()
        # 19 pending and the one leased when the store was written (its lease long over).
        assert sorted(r["delivery_count"] for r in received) == [1] * 19 + [2]
    finally:
        proc.stop()


def test_store_check_reports_broken_references_and_a_damaged_file(tmp_path: Path):
    backup = load_sql(FIXTURES / "store-0.1.0.sql", tmp_path / "data" / "opsbus.db")
    healthy = opsbus("store", "check", "--data-dir", str(tmp_path / "data"))
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    conn = sqlite3.connect(backup, isolation_level=None)
    (seq,) = conn.execute("SELECT event_seq FROM todos WHERE id = 21").fetchone()
    conn.execute("DELETE FROM events WHERE seq = ?", (seq,))
    conn.execute("UPDATE sqlite_sequence SET seq = 3 WHERE name = 'events'")
    conn.close()
    broken = opsbus("store", "check", "--data-dir", str(tmp_path / "data"), "--json")
    assert broken.returncode == 1
    found = {f["check"] for f in json.loads(broken.stdout)["findings"]}
    assert {"item events exist", "foreign keys", "seq counter not behind the log"} <= found

    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(backup.read_bytes())
    conn = sqlite3.connect(damaged)
    (root,) = conn.execute("SELECT rootpage FROM sqlite_master WHERE name = 'events_identity'"
                           ).fetchone()
    (page_size,) = conn.execute("PRAGMA page_size").fetchone()
    conn.close()
    with open(damaged, "r+b") as fh:
        fh.seek((root - 1) * page_size + 100)
        fh.write(b"\xff" * 200)
    result = opsbus("store", "check", "--file", str(damaged))
    assert result.returncode == 1
    assert "problem(s)" in result.stdout and "Traceback" not in result.stderr
