"""The command line as a whole: usage errors, exit codes in --help, JSON errors, no tracebacks,
shell completion, progress output."""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zoostore.cli import COMMAND_EXIT_CODES, COMMANDS, EXIT_MEANINGS, main
from zoostore.cli._ui import TerminalProgress


def zoostore(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "zoostore", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


def test_unknown_option_shows_the_commands_usage() -> None:
    proc = zoostore("sync", "--bogus")
    assert proc.returncode == 2
    assert "usage: zoostore sync" in proc.stderr and "--bogus" in proc.stderr


def test_every_command_help_ends_with_its_exit_codes() -> None:
    assert set(COMMAND_EXIT_CODES) == set(COMMANDS)
    for name in COMMANDS:
        out = zoostore(name, "--help").stdout
        tail = " ".join(out.split()).replace("- ", "-").split("exit codes:")[-1]
        for code in (0, 1, 2, *COMMAND_EXIT_CODES[name]):
            assert f"{code} {EXIT_MEANINGS[code].split()[0]}" in tail, (name, code)
    assert "3 zoo.lock out of date" in " ".join(zoostore("--help").stdout.split())
    # An example command at the end of the epilog stays apart from the exit codes that follow it.
    assert "--tag bleedingedge; exit codes: 0 ok" in " ".join(zoostore("publish-release", "--help").stdout.split())


def test_subcommand_help_ends_with_its_commands_exit_codes() -> None:
    # README: `zoostore COMMAND --help` ends with the exit codes; `cache prune` and `blob put` are
    # what a user types, so their help ends with them too (they had none).
    for argv, command in ((["cache", "prune"], "cache"), (["cache", "info"], "cache"), (["blob", "put"], "blob")):
        out = " ".join(zoostore(*argv, "--help").stdout.split()).replace("- ", "-")
        assert "exit codes:" in out, argv
        tail = out.split("exit codes:")[-1]
        for code in (0, 1, 2, *COMMAND_EXIT_CODES[command], 130):
            assert f"{code} {EXIT_MEANINGS[code].split()[0]}" in tail, (argv, code)


def test_errors_are_json_with_json(tmp_path: Path) -> None:
    proc = zoostore("ls", str(tmp_path / "nowhere"), "--json")
    assert proc.returncode == 6
    assert proc.stdout == ""
    err = json.loads(proc.stderr)["error"]
    assert err["code"] == 6 and err["kind"] == "StoreNotFoundError" and "zoostore init" in err["message"]


def _boom(exc: BaseException) -> argparse.Namespace:
    def run(args: argparse.Namespace) -> int:
        raise exc
    return argparse.Namespace(func=run, debug=False, json=False, _parser=None)


@pytest.mark.parametrize("exc, code, words", [
    (RuntimeError("kaput"), 1, ["internal error", "RuntimeError: kaput", "--debug"]),
    (OSError(28, "No space left on device", "/x/y"), 1, ["No space left on device", "/x/y", "free some disk space"]),
    (PermissionError(13, "Permission denied", "/etc/z"), 1, ["Permission denied", "/etc/z", "permissions"]),
])
def test_no_traceback_reaches_a_user(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                     exc: BaseException, code: int, words: list[str]) -> None:
    monkeypatch.setattr("zoostore.cli.parse", lambda argv: _boom(exc))
    monkeypatch.delenv("ZOOSTORE_DEBUG", raising=False)
    assert main([]) == code
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for w in words:
        assert w in err


def test_debug_shows_the_traceback(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("zoostore.cli.parse", lambda argv: _boom(RuntimeError("kaput")))
    monkeypatch.setenv("ZOOSTORE_DEBUG", "1")
    assert main([]) == 1
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash is not installed")
def test_bash_completion_completes_commands_and_options() -> None:
    script = zoostore("completion", "bash").stdout
    probe = script + (
        'COMP_WORDS=(zoostore sy); COMP_CWORD=1; _zoostore; echo "1:${COMPREPLY[*]}"\n'
        'COMP_WORDS=(zoostore sync --lo); COMP_CWORD=2; _zoostore; echo "2:${COMPREPLY[*]}"\n'
        'COMP_WORDS=(zoostore completion ""); COMP_CWORD=2; _zoostore; echo "3:${COMPREPLY[*]}"\n'
    )
    out = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(":", 1) for line in out.stdout.splitlines())
    assert lines["1"].split() == ["sync"]
    assert lines["2"].split() == ["--locked"]
    assert {"bash", "zsh", "fish"} <= set(lines["3"].split())


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells_get_scripts_naming_every_command(shell: str) -> None:
    out = zoostore("completion", shell).stdout
    for name in COMMANDS:
        assert name in out


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_shows_file_name_total_rate_and_eta(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZOOSTORE_NO_PROGRESS", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    p = TerminalProgress(stream=FakeTTY())
    assert p.enabled
    p.start("models/a.bin", 1000)
    p.start("models/b.bin", 3000)
    p.advance("models/a.bin", 1000)
    p.done("models/a.bin")
    p.advance("models/b.bin", 1000)
    line = p.line(p.started_at + 2.0)  # type: ignore[operator]
    assert line.startswith("[1/2] models/b.bin")
    assert "2.0 KiB/3.9 KiB" in line
    assert "/s" in line and "ETA" in line


def test_progress_keeps_the_bar_in_place_for_a_wide_file_name() -> None:
    """A CJK name took 40 code points but up to 80 columns: the bar moved, and the line could wrap."""
    import unicodedata

    def columns(text: str) -> int:
        return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)

    starts = set()
    for name in ("models/plain.bin", "模型/" + "权重" * 30 + ".bin", "模型/权重.bin"):
        p = TerminalProgress(stream=FakeTTY(), enabled=True)
        p.start(name, 100)
        line = p.line(p.started_at + 1.0)  # type: ignore[operator]
        starts.add(columns(line[:line.index(" [")]))
        assert line.split(" [")[0].rstrip().endswith(".bin")  # the end of the name is what shows
    assert starts == {40}


def test_progress_is_off_when_asked_or_not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setenv("ZOOSTORE_NO_PROGRESS", "1")
    assert not TerminalProgress(stream=FakeTTY()).enabled
    monkeypatch.delenv("ZOOSTORE_NO_PROGRESS")
    assert TerminalProgress(stream=FakeTTY()).enabled
    assert not TerminalProgress(stream=io.StringIO()).enabled
    args = argparse.Namespace(quiet=False, json=False, no_progress=True)
    assert not TerminalProgress.for_args(args).enabled


@pytest.mark.parametrize("url, extra", [("gs://bucket/zoo", "gcs"), ("az://container/zoo", "azure")])
def test_missing_backend_package_names_the_extra(url: str, extra: str) -> None:
    import importlib.util

    if importlib.util.find_spec({"gcs": "gcsfs", "azure": "adlfs"}[extra]) is not None:
        pytest.skip(f"the {extra} backend package is installed here; the message is for when it is not")
    proc = zoostore("ls", url)
    assert proc.returncode == 12
    assert f"pip install 'zoostore[{extra}]'" in proc.stderr and "Traceback" not in proc.stderr


def test_lock_and_gc_speak_json(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "w.bin").write_bytes(os.urandom(50_000))
    store = str(tmp_path / "store")
    assert zoostore("init", store).returncode == 0
    for v in ("1.0.0", "1.1.0"):
        assert zoostore("publish", store, "net", v, str(model), "--arch", "any", "-q").returncode == 0
    project = tmp_path / "p"
    project.mkdir()
    (project / "zoo.toml").write_text(f'store = "{store}"\n[models]\nnet = "^1"\n')
    env = {**os.environ, "ZOOSTORE_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-m", "zoostore", "lock", "--json"], cwd=project, env=env,
                         capture_output=True, text=True, timeout=60)
    doc = json.loads(out.stdout)
    assert doc["schema"] == 1 and doc["models"] == {"net": "1.1.0"} and doc["written"] is True
    assert doc["changes"] == [{"model": "net", "old": None, "new": "1.1.0"}]
    plan = json.loads(zoostore("gc", store, "--keep", "net@1.1.0", "--dry-run", "--json").stdout)
    assert plan["dry_run"] is True and plan["plan"]["drop"] == ["net@1.0.0"] and "result" not in plan
    refused = zoostore("gc", store, "--keep", "net@1.1.0", "--json")
    assert refused.returncode == 2 and "--yes" in refused.stderr
    done = json.loads(zoostore("gc", store, "--keep", "net@1.1.0", "--json", "--yes").stdout)
    assert done["result"]["dropped"] == ["net@1.0.0"]


def test_sync_that_relocks_says_what_it_resolved(tmp_path: Path) -> None:
    model = tmp_path / "m"
    model.mkdir()
    (model / "w.bin").write_bytes(os.urandom(20_000))
    store = str(tmp_path / "store")
    zoostore("init", store)
    for v in ("1.0.0", "1.1.0"):
        zoostore("publish", store, "net", v, str(model), "--arch", "any", "-q")
    project = tmp_path / "p"
    project.mkdir()
    env = {**os.environ, "ZOOSTORE_CACHE": str(tmp_path / "cache")}

    def sync(spec: str) -> str:
        (project / "zoo.toml").write_text(f'store = "{store}"\n[models]\nnet = "{spec}"\n')
        proc = subprocess.run([sys.executable, "-m", "zoostore", "sync"], cwd=project, env=env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return proc.stderr

    assert "re-locked: net (new) -> 1.0.0" in sync("1.0.0")
    assert "re-locked: net 1.0.0 -> 1.1.0" in sync("^1.1")
    assert "re-locked" not in sync("^1.1")


_RUN = """
import atexit, sys, threading, time
from pathlib import Path
from zoostore.cli import run
out = Path(sys.argv[1])
def late():   # a non-daemon thread still working when the command returns
    time.sleep(0.3)
    out.with_suffix(".thread").write_text("joined")
threading.Thread(target=late).start()
atexit.register(lambda: out.with_suffix(".atexit").write_text("ran"))
class Torn:   # freed by the interpreter's teardown, which a successful command skips
    def __del__(self): out.with_suffix(".teardown").write_text("ran")
kept = Torn()
sys.argv = [sys.argv[0], *sys.argv[2:]]
run()
"""


def test_the_console_entry_point_skips_teardown_but_not_what_exiting_owes(tmp_path: Path) -> None:
    """`run()` ends a successful command with os._exit: threads are joined, atexit handlers
    run and stdout is flushed first, so nothing is lost; a failure exits as usual."""
    script = tmp_path / "zoostore-script"   # as the console script runs: __main__ is this file
    script.write_text(_RUN)
    marker = tmp_path / "m"
    proc = subprocess.run([sys.executable, str(script), str(marker), "completion", "bash"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == zoostore("completion", "bash").stdout and "complete -F" in proc.stdout
    assert marker.with_suffix(".thread").read_text() == "joined"
    assert marker.with_suffix(".atexit").read_text() == "ran"
    assert not marker.with_suffix(".teardown").exists()
    assert pyproject_script() == "zoostore.cli:run"

    failed = subprocess.run([sys.executable, str(script), str(tmp_path / "f"), "ls", str(tmp_path / "none")],
                            capture_output=True, text=True, timeout=60)
    assert failed.returncode == 6 and "no zoostore store" in failed.stderr
    assert (tmp_path / "f.thread").read_text() == "joined" and (tmp_path / "f.atexit").read_text() == "ran"
    assert (tmp_path / "f.teardown").read_text() == "ran"


def test_a_program_that_runs_zoostore_carries_on_after_it() -> None:
    """`python -m cProfile -m zoostore` prints its profile once zoostore returned: run() exits
    quickly only when zoostore is the program."""
    proc = subprocess.run([sys.executable, "-m", "cProfile", "-m", "zoostore", "completion", "bash"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "complete -F" in proc.stdout and "function calls" in proc.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="C's stdio through ctypes.CDLL(None): POSIX")
def test_output_a_native_library_buffered_in_c_stdio_survives_the_quick_exit(tmp_path: Path) -> None:
    """A native library loaded in-process (TVM, onnxruntime: numpy and tvm load ctypes) writes
    through C's stdio, whose stdout buffer (a pipe or a file: fully buffered) exit() flushes
    and os._exit does not. PYTHONUNBUFFERED (set by some CI runners) hides it: unset here."""
    script = tmp_path / "zoostore-script"
    script.write_text("import ctypes, sys\n"
                      "from zoostore.cli import run\n"
                      "ctypes.CDLL(None).printf(b'from a native library\\n')\n"
                      "sys.argv = [sys.argv[0], 'completion', 'bash']\n"
                      "run()\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "from a native library" in proc.stdout and "complete -F" in proc.stdout


def test_output_that_cannot_be_flushed_at_exit_is_an_error_without_a_traceback(tmp_path: Path) -> None:
    """A command's last output may still sit in stdout's buffer when `run()` exits."""
    script = tmp_path / "zoostore-script"
    script.write_text("import io, sys, zoostore.cli as cli\n"
                      "class Full(io.StringIO):\n"
                      "    def flush(self): raise OSError(28, 'No space left on device')\n"
                      "sys.stdout = Full()\n"
                      "cli.main = lambda: print('the last line') or 0\n"
                      "cli.run()\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert proc.stderr == "zoostore: error: writing the output failed: No space left on device\n"


def test_a_command_started_with_stdout_closed_exits_cleanly() -> None:
    """Python sets sys.stdout to None when descriptor 1 is closed at start: nothing to flush."""
    script = "import os, sys, subprocess; os.close(1); sys.exit(subprocess.run(sys.argv[1:]).returncode)"
    proc = subprocess.run([sys.executable, "-c", script, sys.executable, "-m", "zoostore", "completion", "bash"],
                          stderr=subprocess.PIPE, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stderr == ""


def pyproject_script() -> str:
    import tomllib

    root = Path(__file__).resolve().parents[1]
    return tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"]["zoostore"]


def test_swapped_arguments_and_conflicting_options_say_what_to_run(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    store = str(tmp_path / "store")
    assert main(["init", store]) == 0
    src = tmp_path / "m"
    src.mkdir()
    (src / "a.txt").write_text("a\n")
    # Each used to say only "invalid version 'm1'" / "invalid tag '1.0.0'".
    assert main(["publish", store, "1.0.0", "m1", str(src), "--no-check"]) == 2
    assert f"the order is STORE MODEL VERSION PATH... (zoostore publish {store} m1 1.0.0 ...)" in capsys.readouterr().err
    assert main(["publish", store, "m1", "1.0.0", str(src), "--no-check", "-q"]) == 0
    assert main(["tag", store, "m1", "1.0.0", "stable"]) == 2
    assert f"the order is MODEL TAG VERSION (zoostore tag {store} m1 stable 1.0.0)" in capsys.readouterr().err
    assert main(["tag", store, "m1", "stable", "1.0.0"]) == 0
    # catalog --json printed JSON to stdout and ignored --output without a word
    out = tmp_path / "CATALOG.md"
    assert main(["catalog", store, "--output", str(out), "--json"]) == 2
    assert "give one of them" in capsys.readouterr().err and not out.exists()
