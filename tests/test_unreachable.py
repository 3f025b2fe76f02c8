"""A store that no retry can reach fails at once, saying why: an endpoint whose host name does
not exist, or whose TLS certificate does not verify (S3 and HTTPS stores). A resolver that is
down ("temporary failure") stays a transient error, retried as before."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zoostore.cli import main

TLS = Path(__file__).parent / "data" / "tls"
NOWHERE = "zoo-nowhere.test"   # never resolved: getaddrinfo is replaced for it below


@pytest.fixture
def tls_port() -> Iterator[int]:
    """A loopback server that completes TLS handshakes with a self-signed certificate, then hangs up."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(TLS / "cert.pem", TLS / "key.pem")
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1)
            except OSError:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join(5)
    server.close()


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """getaddrinfo answers NOWHERE with the error code in the returned dict (no such name by
    default), and counts the lookups; other names resolve as usual."""
    real = socket.getaddrinfo
    state = {"errno": socket.EAI_NONAME, "lookups": 0}

    def fake(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, (str, bytes)) and NOWHERE in str(host):
            state["lookups"] += 1
            raise socket.gaierror(state["errno"], "Name or service not known" if state["errno"] == socket.EAI_NONAME
                                  else "Temporary failure in name resolution")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return state


@pytest.fixture(autouse=True)
def fake_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    for var in ("AWS_CA_BUNDLE", "SSL_CERT_FILE", "ZOOSTORE_MAX_ATTEMPTS", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)


def s3_ls(endpoint: str) -> int:
    return main(["ls", "s3://bucket/zoo", "--store-option", f"endpoint_url={endpoint}"])


def test_an_s3_endpoint_whose_host_does_not_exist_fails_at_once(resolver: dict[str, int],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("s3fs")
    assert s3_ls(f"http://{NOWHERE}:9000") == 13
    err = capsys.readouterr().err
    assert f"the host name of http://{NOWHERE}:9000 does not resolve" in err
    assert "endpoint_url" in err and "retrying with backoff" not in err   # no retry notice
    assert resolver["lookups"] == 1   # one attempt, not the default 10


def test_an_s3_endpoint_whose_resolver_is_down_is_still_retried(resolver: dict[str, int], monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("s3fs")
    resolver["errno"] = socket.EAI_AGAIN
    monkeypatch.setenv("ZOOSTORE_MAX_ATTEMPTS", "2")
    assert s3_ls(f"http://{NOWHERE}:9000") == 13
    err = capsys.readouterr().err
    assert "retrying with backoff" in err and "gave up after 2 attempt(s)" in err
    assert resolver["lookups"] == 2


def test_an_s3_endpoint_whose_certificate_does_not_verify_fails_at_once_naming_aws_ca_bundle(
        tls_port: int, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("s3fs")
    assert s3_ls(f"https://127.0.0.1:{tls_port}") == 13
    err = capsys.readouterr().err
    assert f"the TLS certificate of https://127.0.0.1:{tls_port} does not verify (self-signed certificate)" in err
    assert "AWS_CA_BUNDLE" in err and "retrying with backoff" not in err


def test_with_aws_ca_bundle_the_same_endpoint_gets_past_the_certificate(
        tls_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("s3fs")
    monkeypatch.setenv("AWS_CA_BUNDLE", str(TLS / "cert.pem"))
    monkeypatch.setenv("ZOOSTORE_MAX_ATTEMPTS", "1")
    assert s3_ls(f"https://127.0.0.1:{tls_port}") == 13   # the server hangs up after the handshake
    err = capsys.readouterr().err
    assert "certificate" not in err and "gave up after 1 attempt(s)" in err


def test_an_https_store_whose_host_does_not_exist_fails_at_once(resolver: dict[str, int],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", f"https://{NOWHERE}/zoo"]) == 13
    err = capsys.readouterr().err
    assert f"the host name of https://{NOWHERE} does not resolve" in err and "retrying with backoff" not in err
    assert resolver["lookups"] == 1


def test_an_https_store_whose_certificate_does_not_verify_names_ssl_cert_file(
        tls_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ls", f"https://127.0.0.1:{tls_port}/zoo"]) == 13
    err = capsys.readouterr().err
    assert "does not verify (self-signed certificate)" in err and "SSL_CERT_FILE" in err
    monkeypatch.setenv("SSL_CERT_FILE", str(TLS / "cert.pem"))
    monkeypatch.setenv("ZOOSTORE_MAX_ATTEMPTS", "1")
    assert main(["ls", f"https://127.0.0.1:{tls_port}/zoo"]) == 13
    assert "certificate" not in capsys.readouterr().err   # trusted now: the hang-up is what fails
