"""Authenticated out of the box: the admin token file, the CLI finding it, `opsbus token`,
and `--no-auth` saying loudly what it does."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp

from tests.broker_process import ROOT, BrokerProcess


def opsbus(*args: str, cwd: Path, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    """`opsbus ARGS` with no token in the environment, as a user on the broker's host."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPSBUS_")}
    return subprocess.run([sys.executable, "-m", "broker", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd,
                          env={**clean, "PYTHONPATH": str(ROOT), "HOME": str(cwd),
                               **(env or {})})


def test_first_start_writes_an_owner_only_admin_token(secured):
    path = secured.data_dir / "admin.token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = path.read_text().strip()
    assert secret.startswith("opsbus_") and len(secret) > 40


async def test_the_admin_token_file_opens_the_api_and_survives_restarts(tmp_path):
    proc = BrokerProcess(tmp_path / "data", args=["--token", "unused-extra-admin"]).start()
    try:
        secret = (tmp_path / "data" / "admin.token").read_text().strip()
        async with aiohttp.ClientSession() as bare:
            async with bare.get(proc.url + "/v1/whoami",
                                headers={"Authorization": f"Bearer {secret}"}) as resp:
                assert resp.status == 200 and (await resp.json())["name"] == "admin"
        proc.restart()
        assert (tmp_path / "data" / "admin.token").read_text().strip() == secret
    finally:
        proc.stop()


def test_the_cli_finds_the_admin_token_and_manages_named_tokens(secured, tmp_path):
    # A user in the folder the broker runs from: data_dir from the environment, no token.
    env = {"OPSBUS_DATA_DIR": str(secured.data_dir)}
    name = f"ci-{uuid.uuid4().hex[:6]}"
    made = opsbus("token", "create", name, "--scope", "publish", "--scope", "read",
                  "--source", "ci/*", "--json", "--url", secured.url, cwd=tmp_path, env=env)
    assert made.returncode == 0, made.stderr
    created = json.loads(made.stdout)
    assert created["name"] == name and created["scopes"] == ["publish", "read"]
    assert created["sources"] == ["ci/*"] and created["secret"].startswith("opsbus_")
    listed = opsbus("token", "list", "--json", "--url", secured.url, cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    entry = next(t for t in json.loads(listed.stdout) if t["name"] == name)
    assert "secret" not in entry and created["secret"] not in listed.stdout
    # The new token works for the CLI given explicitly; its scopes hold.
    emitted = opsbus("emit", "--url", secured.url, "--token", created["secret"], "--type",
                     "t.x", "--source", "ci/job", cwd=tmp_path)
    assert emitted.returncode == 0, emitted.stderr
    refused = opsbus("token", "list", "--url", secured.url, "--token", created["secret"],
                     cwd=tmp_path)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (f"opsbus: this needs the 'admin' scope; token {name!r}"
                                      " has publish, read")
    revoked = opsbus("token", "revoke", name, "--url", secured.url, cwd=tmp_path, env=env)
    assert revoked.returncode == 0, revoked.stderr
    gone = opsbus("emit", "--url", secured.url, "--token", created["secret"], "--type", "t.x",
                  "--source", "ci/job", cwd=tmp_path)
    assert gone.returncode == 1 and "not valid" in gone.stderr
    # Without the data directory the CLI has no token: one line, non-zero.
    lost = opsbus("token", "list", "--url", secured.url, cwd=tmp_path)
    assert lost.returncode == 1 and lost.stderr.count("\n") == 1
    assert "needs an API token" in lost.stderr


def test_token_commands_have_help(tmp_path):
    for verb in ("create", "list", "revoke"):
        shown = opsbus("token", verb, "--help", cwd=tmp_path)
        assert shown.returncode == 0 and "--url" in shown.stdout, verb
    assert "--scope" in opsbus("token", "create", "--help", cwd=tmp_path).stdout


def test_the_local_admin_token_is_never_sent_to_a_remote_url(secured, tmp_path):
    from broker.auth.local import local_token

    env = {"OPSBUS_DATA_DIR": str(secured.data_dir)}
    assert local_token(secured.url, env) == (secured.data_dir / "admin.token").read_text().strip()
    assert local_token("https://opsbus.example", env) is None


async def test_no_auth_warns_loudly_and_opens_the_api(tmp_path):
    proc = BrokerProcess(tmp_path / "data", args=["--no-auth"]).start()
    try:
        async with aiohttp.ClientSession() as bare, bare.get(proc.url + "/v1/whoami") as resp:
            assert resp.status == 200 and (await resp.json())["auth"] is False
        assert not (tmp_path / "data" / "admin.token").exists()
    finally:
        proc.stop()
    log = proc.log()
    assert "AUTHENTICATION IS OFF" in log and "any web page" in log.replace("\n", " ")
