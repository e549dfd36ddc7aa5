"""`serve --tls-cert/--tls-key`: the API over HTTPS with a certificate made for the test."""

from __future__ import annotations

import os
import ssl
import sys
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import trustme

from tests.broker_process import ROOT, free_port
from tests.conftest import STRUCTURED, make_event
from tests.ops_support import ServerProcess, opsbus


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_broker(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory
               ) -> Iterator[tuple[ServerProcess, Path]]:
    root = tmp_path_factory.mktemp("tls")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_path, key_path, ca_path = root / "cert.pem", root / "key.pem", root / "ca.pem"
    cert.private_key_pem.write_to_path(str(key_path))
    cert.cert_chain_pems[0].write_to_path(str(cert_path))
    ca.cert_pem.write_to_path(str(ca_path))
    port = free_port()
    client_context = ssl.create_default_context(cafile=str(ca_path))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = ServerProcess(
        [sys.executable, "-m", "broker", "serve", "--listen", f"127.0.0.1:{port}",
         "--data-dir", str(root / "data"), "--tls-cert", str(cert_path),
         "--tls-key", str(key_path)],
        url=f"https://127.0.0.1:{port}", data_dir=root / "data", cwd=root, env=env,
        ssl_context=client_context).start()
    try:
        yield server, ca_path
    finally:
        assert server.stop() == 0


async def test_publish_read_and_stream_over_https(tls_broker: tuple[ServerProcess, Path]):
    server, ca_path = tls_broker
    context = ssl.create_default_context(cafile=str(ca_path))
    async with aiohttp.ClientSession(headers=server.headers) as http:
        event = make_event(type="tls.check")
        async with http.post(server.url + "/v1/events", json=event, headers=STRUCTURED,
                             ssl=context) as resp:
            assert resp.status == 201
            seq = (await resp.json())["seq"]
        async with http.get(f"{server.url}/v1/events/{seq}", ssl=context) as resp:
            assert (await resp.json())["event"]["id"] == event["id"]
        async with http.get(server.url + "/v1/stream", params={"after": str(seq - 1)},
                            ssl=context) as stream:
            while (line := await stream.content.readline()) != f"id: {seq}\n".encode():
                assert line, "the stream ended before the event"
        # An unverified peer is refused: the certificate is not in the system store.
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            async with http.get(server.url + "/healthz"):
                pass
    log = server.log()
    assert f"listening on https://127.0.0.1:{server.url.rsplit(':', 1)[1]}" in log


def test_the_cli_trusts_a_private_ca_from_ssl_cert_file(tls_broker: tuple[ServerProcess, Path]):
    server, ca_path = tls_broker
    token = ["--token", server.token] if server.token else []
    sent = opsbus("emit", "--url", server.url, "--type", "tls.cli", *token,
                  env={"SSL_CERT_FILE": str(ca_path)})
    assert sent.returncode == 0, sent.stderr
    untrusted = opsbus("emit", "--url", server.url, "--type", "tls.cli", *token)
    assert untrusted.returncode != 0 and "Traceback" not in untrusted.stderr


def test_tls_settings_are_checked_with_one_line_errors(tmp_path: Path):
    alone = opsbus("serve", "--data-dir", str(tmp_path / "d"), "--tls-cert", "c.pem")
    assert alone.returncode == 1 and "tls_key" in alone.stderr
    assert alone.stderr.count("\n") == 1
    (tmp_path / "bad.pem").write_text("not a certificate\n")
    bad = opsbus("serve", "--data-dir", str(tmp_path / "d"), "--listen",
                 f"127.0.0.1:{free_port()}", "--tls-cert", str(tmp_path / "bad.pem"),
                 "--tls-key", str(tmp_path / "bad.pem"))
    assert bad.returncode == 1 and "cannot use certificate" in bad.stderr
    assert "Traceback" not in bad.stderr
