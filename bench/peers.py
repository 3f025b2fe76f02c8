"""The tools zoostore is compared with, and the S3 servers the benchmarks run against.

- `versions()`: every tool's version (or "not installed"), for the report.
- `dvc_bin()`: dvc from its own virtualenv (~/.cache/zoostore-bench/dvc-venv), created with
  `pip install dvc` on first use if that finishes within a time limit (it installs from the
  configured index or pip's cache); None when it does not.
- `S3Server`: moto's server in a child process, or Ceph's radosgw (zoostore.testing.radosgw),
  with the environment that points zoostore (AWS_ENDPOINT_URL) and restic (s3:) at a bucket.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import common as c

TOOLS = ("restic", "b3sum", "zstd", "tar", "rsync", "cp", "casync", "git")
DVC_VENV = Path(os.environ.get("ZOOSTORE_BENCH_DVC_VENV", Path.home() / ".cache" / "zoostore-bench" / "dvc-venv"))
KEY, SECRET = "benchkey", "benchsecret"


def version(tool: str) -> str:
    if tool == "dvc":
        dvc = dvc_bin(install=False)
        if dvc is None:
            return "not installed"
        out = subprocess.run([dvc, "--version"], capture_output=True, text=True).stdout.strip()
        return out.splitlines()[-1] if out else "?"
    if tool == "casync":
        if not c.have("casync"):
            return "not installed"
        out = subprocess.run(["casync", "--version"], capture_output=True, text=True).stdout.strip()
        return out.split()[-1] if out else "?"
    if tool == "cp":
        if not c.have("cp"):
            return "not installed"
        out = subprocess.run(["cp", "--version"], capture_output=True, text=True).stdout
        return out.splitlines()[0].split()[-1] if out else "?"
    if tool == "tar":
        out = subprocess.run(["tar", "--version"], capture_output=True, text=True).stdout
        return out.splitlines()[0].split()[-1] if out else "?"
    return c.tool_version(tool)


def versions(extra: dict[str, str] | None = None) -> dict[str, str]:
    from importlib.metadata import version as dist_version

    out = {t: version(t) for t in (*TOOLS, "dvc")}
    for dist in ("zoostore", "blake3", "zstandard", "pyfastcdc", "fsspec", "s3fs", "moto"):
        try:
            out[f"python:{dist}"] = dist_version(dist)
        except Exception:
            out[f"python:{dist}"] = "not installed"
    out.update(extra or {})
    return out


def dvc_bin(install: bool = True, limit: float = 180) -> str | None:
    """dvc in its own venv; created (pip install dvc) when `install` and it takes under `limit` s."""
    exe = DVC_VENV / "bin" / "dvc"
    if exe.exists():
        return str(exe)
    if not install:
        return None
    c.log(f"== dvc: creating its own venv in {DVC_VENV} (pip install dvc, at most {limit:.0f} s)")
    try:
        subprocess.run([sys.executable, "-m", "venv", str(DVC_VENV)], check=True, timeout=60,
                       capture_output=True)
        subprocess.run([str(DVC_VENV / "bin" / "pip"), "install", "-q", "dvc"], check=True, timeout=limit,
                       capture_output=True)
    except (OSError, subprocess.SubprocessError) as e:
        c.log(f"   dvc did not install within {limit:.0f} s ({type(e).__name__}); dvc is left out")
        shutil.rmtree(DVC_VENV, ignore_errors=True)
        return None
    return str(exe) if exe.exists() else None


# ------------------------------------------------------------------------------ S3 servers

class S3Server:
    """moto or radosgw on loopback; `bucket()` makes a fresh bucket and returns its name."""

    def __init__(self, kind: str, work: Path) -> None:
        self.kind = kind
        self.work = work
        self.proc: subprocess.Popen[str] | None = None
        self.rgw: Any = None
        self.key, self.secret = KEY, SECRET
        self.endpoint = ""

    @staticmethod
    def available(kind: str) -> str | None:
        """None when `kind` can run here, else why not."""
        if kind == "moto":
            try:
                import moto.server  # noqa: F401
            except ImportError:
                return "moto[server] is not installed"
            return None
        from zoostore.testing import radosgw

        return radosgw.available()

    def start(self) -> S3Server:
        if self.kind == "moto":
            self.proc, self.endpoint = c.start_moto()
        else:
            from zoostore.testing.radosgw import RadosGW

            t0 = time.perf_counter()
            self.rgw = RadosGW(self.work / "radosgw", memstore_bytes=6 << 30).start()
            self.endpoint = self.rgw.endpoint_url
            self.key, self.secret = self.rgw.access_key, self.rgw.secret_key
            c.log(f"   radosgw started in {time.perf_counter() - t0:.1f} s")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            c.stop_moto(self.proc)
            self.proc = None
        if self.rgw is not None:
            self.rgw.stop()
            self.rgw = None

    def env(self) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": self.key, "AWS_SECRET_ACCESS_KEY": self.secret,
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_DEFAULT_REGION": "us-east-1",
                "NO_PROXY": "127.0.0.1,localhost"}

    def bucket(self) -> str:
        import boto3

        name = f"bench-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=self.key,
                     aws_secret_access_key=self.secret, region_name="us-east-1").create_bucket(Bucket=name)
        return name

    def restic_repo(self, bucket: str) -> str:
        return f"s3:{self.endpoint}/{bucket}/restic"
