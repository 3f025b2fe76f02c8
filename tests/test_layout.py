"""zoo.toml's `layout`: where sync places each file under dest. `{model}/{arch}/{path}` is the
default, `{model}/{path}` suits single-arch consumers such as Autoware's `models/<network>/`.
Validated when zoo.toml is loaded (placeholders, ends with {path}, relative) and when sync maps
the lock, so that two different files never land on one path."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from zoostore.cli import main as cli
from zoostore.core.errors import ConfigError
from zoostore.documents.project import DEFAULT_LAYOUT, Layout, load_project
from zoostore.ops.publish import publish
from zoostore.ops.sync import sync_project
from zoostore.repository import Store, init_store

REPO = Path(__file__).resolve().parent.parent
STATE = ".zoostore-state.json"


@pytest.fixture
def zoo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("ZOOSTORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ZOOSTORE_STORE", raising=False)
    monkeypatch.delenv("ZOOSTORE_OFFLINE", raising=False)
    store, _ = init_store(tmp_path / "store")

    def files(name: str, content: dict[str, str], arch: str, model: str) -> None:
        src = tmp_path / "src" / model / arch
        for path, text in content.items():
            (src / path).parent.mkdir(parents=True, exist_ok=True)
            (src / path).write_text(text)
        publish(store, model, "1.0.0", [src], arch=arch, check=False)

    files("net", {"deploy_io.json": "{}\n", "labels/coco.txt": "cat\n"}, "any", "net")
    files("net", {"deploy_lib.so": "x86 lib\n"}, "x86_64", "net")
    files("net", {"deploy_lib.so": "arm lib\n"}, "aarch64", "net")
    files("other", {"deploy_io.json": "{\"other\": 1}\n"}, "any", "other")
    files("plain", {"model.onnx": "onnx\n"}, "any", "plain")
    files("nested", {"labels": "a file named like net's folder\n"}, "any", "nested")
    return store


def project(tmp_path: Path, *, layout: str | None, archs: tuple[str, ...] = ("x86_64",),
            models: str = 'net = "1.0.0"') -> Path:
    p = tmp_path / "project"
    p.mkdir(exist_ok=True)
    line = f"layout = {json.dumps(layout)}\n" if layout is not None else ""
    (p / "zoo.toml").write_text(f'store = "../store"\narchs = {json.dumps(list(archs))}\n{line}[models]\n{models}\n')
    return p


def placed(dest: Path) -> list[str]:
    return sorted(str(f.relative_to(dest)) for f in dest.rglob("*") if f.is_file() and f.name != STATE)


@pytest.mark.parametrize("text", [DEFAULT_LAYOUT, "{model}/{path}", "{path}", "{arch}/{model}/{path}",
                                  "nets/{model}-{arch}/{path}"])
def test_valid_layouts(text: str) -> None:
    layout = Layout.parse(text)
    assert str(layout) == text
    assert layout.apply(model="net", arch="x86_64", path="a/b.so").endswith("a/b.so")


@pytest.mark.parametrize("text, message", [
    ("{model}/{arch}", "must end with {path}"),
    ("{path}/{model}", "must end with {path}"),
    ("{model}{path}", "must end with {path}"),
    ("{path}/{path}", "must end with {path}"),
    ("{model}/{version}/{path}", "{version} is not offered: paths must not move when a pin moves"),
    ("{model}/{name}/{path}", r"unknown placeholder\(s\) {name}"),
    ("{}/{path}", r"unknown placeholder\(s\) {}"),
    ("{model/{path}", "unbalanced"),
    ("{model}}/{path}", "unbalanced"),
    ("/abs/{path}", "is absolute"),
    ("../{path}", r"leaves the version \('..'\)"),
    ("{model}//{path}", "empty or '.' component"),
    ("", "expected a relative path template"),
    (5, "expected a relative path template"),
])
def test_invalid_layouts_are_config_errors(text: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Layout.parse(text, where="zoo.toml: layout")


def test_layout_is_validated_when_zoo_toml_loads(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    p = project(tmp_path, layout="{model}/{path}")
    assert load_project(p).layout == Layout("{model}/{path}")
    assert load_project(project(tmp_path, layout=None)).layout == Layout(DEFAULT_LAYOUT)
    project(tmp_path, layout="{model}/{version}/{path}")
    with pytest.raises(ConfigError, match=r"zoo.toml: layout: unknown placeholder\(s\) {version}"):
        load_project(p)
    assert cli(["sync", "--project", str(p), "-q"]) == 2
    assert "layout" in capsys.readouterr().err


def test_single_arch_layout_places_files_like_autoware(zoo: Store, tmp_path: Path) -> None:
    p = project(tmp_path, layout="{model}/{path}", models='net = "1.0.0"\nother = "1.0.0"')
    r = sync_project(load_project(p))
    dest = p / "models"
    assert placed(dest) == ["net/deploy_io.json", "net/deploy_lib.so", "net/labels/coco.txt",
                            "other/deploy_io.json"]
    assert (dest / "net/deploy_lib.so").read_text() == "x86 lib\n" and r.layout == "{model}/{path}"
    state = json.loads((dest / STATE).read_text())["files"]
    assert sorted(state) == placed(dest)   # two-part keys are valid state entries
    again = sync_project(load_project(p))
    assert again.unchanged == 4 and not again.placed and not again.ignored


def test_two_archs_without_arch_in_the_layout_collide(zoo: Store, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    p = project(tmp_path, layout="{model}/{path}", archs=("x86_64", "aarch64"))
    cli(["lock", "--project", str(p), "-q"])
    with pytest.raises(ConfigError) as exc:
        sync_project(load_project(p))
    message = str(exc.value)
    assert "net@1.0.0 aarch64/deploy_lib.so" in message and "net@1.0.0 x86_64/deploy_lib.so" in message
    assert "'net/deploy_lib.so'" in message and "put {arch} in it" in message
    assert not (p / "models").exists()   # refused before anything was placed
    assert cli(["sync", "--project", str(p), "-q"]) == 2
    assert "layout" in capsys.readouterr().err
    # One arch at a time is fine, and so are `any` files locked for two archs: same bytes.
    assert sync_project(load_project(p), archs=["aarch64"]).placed
    assert (p / "models/net/deploy_lib.so").read_text() == "arm lib\n"
    plain = project(tmp_path, layout="{model}/{path}", archs=("x86_64", "aarch64"), models='plain = "1.0.0"')
    assert sync_project(load_project(plain)).placed == ["plain/model.onnx"]


def test_a_layout_without_model_collides_across_models(zoo: Store, tmp_path: Path) -> None:
    p = project(tmp_path, layout="{path}", models='net = "1.0.0"\nother = "1.0.0"')
    with pytest.raises(ConfigError, match=r"net@1.0.0 x86_64/deploy_io.json and other@1.0.0 x86_64/deploy_io.json "
                                          r"to one path, 'deploy_io.json'; put {model} in it"):
        sync_project(load_project(p))


def test_a_file_where_another_needs_a_folder_collides(zoo: Store, tmp_path: Path) -> None:
    p = project(tmp_path, layout="{path}", models='net = "1.0.0"\nnested = "1.0.0"')
    with pytest.raises(ConfigError, match=r"nested@1.0.0 x86_64/labels and net@1.0.0 x86_64/labels/coco.txt to "
                                          r"'labels' is a file that net@1.0.0 x86_64/labels/coco.txt needs as a directory"):
        sync_project(load_project(p))


def test_changing_the_layout_moves_the_files(zoo: Store, tmp_path: Path) -> None:
    p = project(tmp_path, layout=None)
    sync_project(load_project(p))
    dest = p / "models"
    assert "net/x86_64/deploy_lib.so" in placed(dest)
    project(tmp_path, layout="{model}/{path}")
    r = sync_project(load_project(p))
    assert placed(dest) == ["net/deploy_io.json", "net/deploy_lib.so", "net/labels/coco.txt"]
    assert sorted(r.removed) == ["net/x86_64/deploy_io.json", "net/x86_64/deploy_lib.so", "net/x86_64/labels/coco.txt"]
    assert not (dest / "net/x86_64").exists()


def test_a_file_named_like_the_state_file_is_never_placed_over_it(zoo: Store, tmp_path: Path) -> None:
    src = tmp_path / "src" / "odd"
    src.mkdir(parents=True)
    (src / STATE).write_text("not a state file\n")
    (src / "ok.txt").write_text("ok\n")
    publish(zoo, "odd", "1.0.0", [src / STATE, src / "ok.txt"], arch="any", check=False)
    assert STATE in zoo.resolve("odd", "1.0.0", arch="x86_64").files
    p = project(tmp_path, layout="{path}", models='odd = "1.0.0"')
    r = sync_project(load_project(p))
    assert r.placed == ["ok.txt"] and any("state file" in i for i in r.ignored)
    assert json.loads((p / "models" / STATE).read_text())["format"] == 1


@pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")
def test_cmake_model_dir_follows_the_layout(zoo: Store, tmp_path: Path) -> None:
    p = project(tmp_path, layout="nets/{model}/{path}")
    cli(["lock", "--project", str(p), "-q"])
    (p / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.19)\nproject(layout NONE)\nfind_package(zoostore CONFIG REQUIRED)\n"
        "zoostore_sync()\nzoostore_model_dir(d MODEL net)\nmessage(STATUS \"MODEL_DIR=${d}\")\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    proc = subprocess.run(
        ["cmake", "-S", str(p), "-B", str(p / "build"),
         f"-DCMAKE_PREFIX_PATH={REPO / 'zoostore' / 'integrations' / 'cmake'}",
         f"-DZOOSTORE_EXECUTABLE={sys.executable};-m;zoostore"],
        env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"MODEL_DIR={p / 'models' / 'nets' / 'net'}\n" in proc.stdout
    assert (p / "models/nets/net/deploy_lib.so").read_text() == "x86 lib\n"
