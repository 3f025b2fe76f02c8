"""Every failure a user can cause or meet ends in one message and a documented exit code, never
a traceback: run through the real CLI (a subprocess), against radosgw, closed loopback ports,
failing HTTP servers and the local file system."""

from __future__ import annotations

import contextlib
import http.server
import os
import resource
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from zoostore.cli import EXIT_MEANINGS


def closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def base_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ZOOSTORE_"))}
    env.update(AWS_EC2_METADATA_DISABLED="true", AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), ZOOSTORE_CACHE=str(tmp_path / "cache"),
               ZOOSTORE_MAX_ATTEMPTS="2", ZOOSTORE_RETRY_DEADLINE="5", ZOOSTORE_NO_PROGRESS="1")
    return env


def run(env: dict[str, str], *argv: str, limit_file_size: int | None = None) -> subprocess.CompletedProcess[str]:
    def limits() -> None:
        if limit_file_size is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_size, limit_file_size))

    return subprocess.run([sys.executable, "-m", "zoostore", *argv], env=env, capture_output=True, text=True,
                          timeout=120, preexec_fn=limits)


def assert_message(proc: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    err = proc.stderr
    assert "Traceback" not in err and "internal error" not in err, err
    assert proc.returncode == code, (proc.returncode, err)
    assert code in EXIT_MEANINGS
    lines = [line for line in err.splitlines() if line.startswith("zoostore: error:")]
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.fixture
def s3(radosgw: Any, base_env: dict[str, str]) -> tuple[Any, str, dict[str, str]]:
    bucket = f"fail-{uuid.uuid4().hex[:12]}"
    radosgw.make_bucket(bucket)
    env = dict(base_env, AWS_ACCESS_KEY_ID=radosgw.access_key, AWS_SECRET_ACCESS_KEY=radosgw.secret_key,
               AWS_ENDPOINT_URL=radosgw.endpoint_url)
    assert run(env, "init", f"s3://{bucket}/zoo").returncode == 0
    return radosgw, bucket, env


@pytest.mark.parametrize("case, change, code, needles", [
    ("no credentials", {"AWS_ACCESS_KEY_ID": None, "AWS_SECRET_ACCESS_KEY": None}, 14,
     ["no AWS credentials found", "AWS_PROFILE"]),
    ("wrong secret", {"AWS_SECRET_ACCESS_KEY": "wrong"}, 14, ["refused the credentials (SignatureDoesNotMatch)"]),
    ("unknown key id", {"AWS_ACCESS_KEY_ID": "NOBODYKNOWSTHISKEY00"}, 14, ["refused the credentials (InvalidAccessKeyId)"]),
    ("unknown profile", {"AWS_PROFILE": "no-such-profile"}, 14, ["no-such-profile", "~/.aws/config"]),
])
def test_credential_failures(s3: tuple[Any, str, dict[str, str]], case: str, change: dict[str, str | None],
                             code: int, needles: list[str]) -> None:
    _, bucket, env = s3
    env = dict(env)
    for k, v in change.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    assert_message(run(env, "ls", f"s3://{bucket}/zoo"), code, *needles)


def test_permission_denied_for_another_users_bucket(s3: tuple[Any, str, dict[str, str]]) -> None:
    rgw, bucket, env = s3
    key, secret = rgw.create_user(f"other{uuid.uuid4().hex[:6]}")
    other = dict(env, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret)
    assert_message(run(other, "ls", f"s3://{bucket}/zoo"), 14, "access denied to", "permission")


def test_bucket_missing_and_store_missing(s3: tuple[Any, str, dict[str, str]]) -> None:
    _, bucket, env = s3
    assert_message(run(env, "ls", "s3://no-such-bucket-here/zoo"), 6, "bucket 'no-such-bucket-here' does not exist")
    assert_message(run(env, "init", "s3://no-such-bucket-here/zoo"), 6, "create the bucket first")
    assert_message(run(env, "ls", f"s3://{bucket}/elsewhere"), 6, "zoostore.toml is missing", "zoostore init")


def test_endpoint_down_after_the_retry_budget(base_env: dict[str, str]) -> None:
    env = dict(base_env, AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s",
               AWS_ENDPOINT_URL=f"http://127.0.0.1:{closed_port()}")
    assert_message(run(env, "ls", "s3://zoo/zoo"), 13, "gave up after 2 attempt(s)", "endpoint is up")
    assert_message(run(base_env, "ls", f"http://127.0.0.1:{closed_port()}/zoo"), 13, "Connection refused")


class _Status(http.server.BaseHTTPRequestHandler):
    status = 500

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(self.status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def status_server() -> Iterator[Any]:
    servers = []

    def start(status: int) -> str:
        handler = type("H", (_Status,), {"status": status})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/zoo"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.mark.parametrize("status, code, needle", [(500, 13, "500"), (503, 13, "503"), (403, 14, "403"), (401, 14, "credentials or headers storage option"),
                                                  (404, 6, "zoostore.toml is missing")])
def test_http_errors_after_retries(status_server: Any, base_env: dict[str, str], status: int, code: int,
                                   needle: str) -> None:
    assert_message(run(base_env, "ls", status_server(status)), code, needle)


def test_unknown_protocol_and_missing_backend_package(base_env: dict[str, str]) -> None:
    assert_message(run(base_env, "ls", "nosuchproto://x/zoo"), 2, "unknown protocol nosuchproto://")
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        assert_message(run(base_env, "ls", "gs://bucket/zoo"), 12, "pip install 'zoostore[gcs]'")


def test_file_system_failures(base_env: dict[str, str], tmp_path: Path) -> None:
    # A path the OS refuses (a read-only or pseudo file system), and a write that cannot grow.
    assert_message(run(base_env, "init", "/proc/zoostore-test/zoo"), 1, "/proc/zoostore-test")
    store = tmp_path / "store"
    assert run(base_env, "init", str(store)).returncode == 0
    src = tmp_path / "big"
    src.mkdir()
    (src / "weights.bin").write_bytes(os.urandom(3 << 20))
    proc = run(base_env, "publish", str(store), "net", "1.0.0", str(src), "--no-check", limit_file_size=1 << 20)
    assert_message(proc, 1, "File too large", "ulimit -f", f"({store / 'packs'})")  # where it failed
    assert run(base_env, "ls", str(store)).returncode == 0  # nothing half-written broke the store


@contextlib.contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """`path` as a folder this user may only read: as root (whom modes do not stop) a read-only
    bind mount of it (skipped where mounting is not allowed), else its modes without write bits."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [path, *path.rglob("*")]}
        for p in modes:
            p.chmod(modes[p] & ~0o222)
        try:
            yield path
        finally:
            for p, mode in modes.items():
                p.chmod(mode)
        return
    view = path.with_name(path.name + "-ro")
    view.mkdir()
    if subprocess.run(["mount", "--bind", str(path), str(view)], capture_output=True).returncode != 0:
        pytest.skip("a read-only store needs a read-only bind mount as root, and mount --bind is refused here")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True, capture_output=True)
        yield view
    finally:
        subprocess.run(["umount", str(view)], check=True)


def test_a_read_only_store_serves_readers_and_refuses_writers(base_env: dict[str, str], tmp_path: Path) -> None:
    # A consumer with read access only to a shared local store: ls, verify, get and sync work;
    # publish and tag fail with exit 8 (read-only store), naming the store, not a temp file.
    store, src, project = tmp_path / "store", tmp_path / "src", tmp_path / "project"
    src.mkdir()
    (src / "weights.bin").write_bytes(os.urandom(300_000))
    assert run(base_env, "init", str(store)).returncode == 0
    assert run(base_env, "publish", str(store), "net", "1.0.0", str(src), "--no-check").returncode == 0
    with read_only(store) as shared:
        for argv in (["ls", str(shared), "net"], ["verify", "--read-data", str(shared)],
                     ["get", "--store", str(shared), "net@1", str(tmp_path / "got")]):
            assert run(base_env, *argv).returncode == 0, argv
        project.mkdir()
        (project / "zoo.toml").write_text(f'store = "{shared}"\n[models]\nnet = "^1"\n')
        assert run(base_env, "sync", "--project", str(project)).returncode == 0
        assert (project / "models" / "net").is_dir()
        for argv in (["publish", str(shared), "net", "1.1.0", str(src), "--no-check"],
                     ["tag", str(shared), "net", "stable", "1.0.0"]):
            assert_message(run(base_env, *argv), 8, f"cannot write to the store {shared}", "use a store you can write")
