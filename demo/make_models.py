"""Write the demo zoo source: ONNX networks and their model.toml, one directory per version.

    demo/models/
      .gitignore                 "*": everything here is generated, never committed
      mlp/1.0.0/                 onnx.helper MLP, seeded weights
      mlp/1.1.0/                 same hidden layer, retrained head (2 of 4 tensors differ)
      convnet/1.0.0/             onnx.helper conv net, seeded weights
      convnet/1.1.0/             same conv layer, retrained head
      squeezenet-light/1.0.0/    SqueezeNet 1.0 graph with light weights, from the onnx package
      squeezenet-light/1.1.0/    the same with its bias tensors nudged (a stand-in retrained release)
      silero-vad/6.2.3/          Silero VAD, real weights, from the silero-vad package (MIT)
        <network>.onnx
        model.toml

Run: python demo/make_models.py [--out demo/models]. Deterministic: running it twice writes
the same bytes. The real models are copied out of installed PyPI packages, so nothing is
downloaded at run time: `pip install --no-deps silero-vad==6.2.3` provides the VAD model (its
import needs torch, so the script only locates its data files and never imports it).
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The generators live with the tests that use them (tests/helpers_models.py).
sys.path.insert(0, str(HERE.parent / "tests"))

import helpers_models as hm  # noqa: E402

SILERO_VERSION = "6.2.3"
SILERO_FILE = "silero_vad_op18_ifless.onnx"


def package_dir(name: str) -> Path | None:
    """Where an installed package's files are, without importing it."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def make_generated(out: Path) -> list[Path]:
    written = []
    for version, semver in ((1, "1.0.0"), (2, "1.1.0")):
        written.append(hm.write_model(
            out / "mlp" / semver, hm.mlp(version),
            descriptor=hm.descriptor_text(
                "model.onnx", *hm.MLP_IO,
                summary=f"Two-layer perceptron, 16 features to 4 classes (demo, head v{version})",
                dims={"batch": 1},
                meta={"dataset": "synthetic", "num_classes": 4, "head": f"v{version}"},
                source="demo/make_models.py (tests/helpers_models.py:mlp)",
            ),
        ))
        written.append(hm.write_model(
            out / "convnet" / semver, hm.convnet(version),
            descriptor=hm.descriptor_text(
                "model.onnx", *hm.CONVNET_IO,
                summary=f"Conv 3x3 + max-pool + linear head on 8x8 images (demo, head v{version})",
                dims={"batch": 1},
                meta={"dataset": "synthetic", "num_classes": 3, "head": f"v{version}"},
                source="demo/make_models.py (tests/helpers_models.py:convnet)",
            ),
        ))
    return written


SQUEEZENET_TOML = """\
format = 1
network = "light_squeezenet.onnx"
framework = "onnx"
summary = "SqueezeNet 1.0 graph (ImageNet classifier) with the onnx test suite's light weights"
task = "image-classification"
model_license = "Apache-2.0"

[provenance]
source = "https://pypi.org/project/onnx/"
description = "onnx/backend/test/data/light/light_squeezenet.onnx from the onnx {version} wheel"

[[inputs]]
name = "data_0"
shape = [1, 3, 224, 224]
dtype = "float32"

[[outputs]]
name = "softmaxout_1"
shape = [1, 1000, 1, 1]
dtype = "float32"

[meta]
architecture = "squeezenet1.0"
num_classes = 1000
"""

SILERO_TOML = """\
format = 1
network = "{network}"
framework = "onnx"
summary = "Silero VAD: voice activity probability for a 32 ms chunk of 16 kHz audio"
task = "voice-activity-detection"
model_license = "MIT"

[provenance]
source = "https://github.com/snakers4/silero-vad"
description = "silero_vad/data/{network} from the silero-vad {version} wheel on PyPI"

[dims]
batch = 1
samples = 512

[[inputs]]
name = "input"
shape = ["batch", "samples"]
dtype = "float32"
description = "audio samples in [-1, 1]; 512 per call at 16 kHz, 256 at 8 kHz"

[[inputs]]
name = "sr"
shape = []
dtype = "int64"
description = "sample rate: 16000 selects the 16 kHz branch, anything else the 8 kHz one"

[[inputs]]
name = "state"
shape = [2, "batch", 128]
dtype = "float32"
description = "recurrent state; zeros at the start of a stream, then the previous stateN"

[[outputs]]
name = "output"
shape = ["batch", 1]
dtype = "float32"

[[outputs]]
name = "stateN"
shape = [2, "batch", 128]
dtype = "float32"

[meta]
sample_rates = [8000, 16000]
"""


def make_squeezenet(out: Path) -> Path | None:
    import onnx

    src = package_dir("onnx")
    path = src / "backend" / "test" / "data" / "light" / "light_squeezenet.onnx" if src else None
    if path is None or not path.is_file():
        return None
    dest = out / "squeezenet-light" / "1.0.0"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, dest / path.name)
    (dest / "model.toml").write_text(SQUEEZENET_TOML.format(version=onnx.__version__), encoding="utf-8")
    # 1.1.0: the same graph with its float tensors (the biases; the light weights are generated
    # from shapes) nudged by seeded noise, standing in for a retrained release.
    import numpy as np
    from onnx import numpy_helper

    model = onnx.load(str(path))
    rng = np.random.default_rng(11)
    for i, init in enumerate(model.graph.initializer):
        if init.data_type == onnx.TensorProto.FLOAT and len(init.dims) == 1 and init.dims[0] > 1:
            w = numpy_helper.to_array(init).astype(np.float32)
            w = w + rng.normal(0, 1e-3, w.shape).astype(np.float32)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(w, init.name))
    v2 = out / "squeezenet-light" / "1.1.0"
    v2.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(v2 / path.name))
    (v2 / "model.toml").write_text(SQUEEZENET_TOML.format(version=onnx.__version__), encoding="utf-8")
    return dest / path.name


def make_silero(out: Path) -> Path | None:
    src = package_dir("silero_vad")
    path = src / "data" / SILERO_FILE if src else None
    if path is None or not path.is_file():
        return None
    dest = out / "silero-vad" / SILERO_VERSION
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, dest / SILERO_FILE)
    (dest / "model.toml").write_text(SILERO_TOML.format(network=SILERO_FILE, version=SILERO_VERSION),
                                     encoding="utf-8")
    return dest / SILERO_FILE


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "models", help="default: %(default)s")
    parser.add_argument("--skip-missing", action="store_true",
                        help="skip models whose source package is not installed instead of failing")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    (out / ".gitignore").write_text("# generated by demo/make_models.py\n*\n", encoding="utf-8")
    written = make_generated(out)
    missing = []
    for name, make, hint in (
        ("squeezenet-light", make_squeezenet, "pip install onnx"),
        ("silero-vad", make_silero, f"pip install --no-deps silero-vad=={SILERO_VERSION}"),
    ):
        path = make(out)
        if path is None:
            missing.append(f"{name}: its package is not installed ({hint})")
        else:
            written.append(path)
    for path in written:
        try:
            shown = path.resolve().relative_to(Path.cwd())
        except ValueError:
            shown = path
        print(f"wrote {shown}")
    for line in missing:
        print(f"{'skipped' if args.skip_missing else 'missing'} {line}", file=sys.stderr)
    return 1 if missing and not args.skip_missing else 0


if __name__ == "__main__":
    sys.exit(main())
