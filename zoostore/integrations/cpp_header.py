"""`<model>_config.hpp`: what a C++ consumer of one build needs to know, as constants.

In the spirit of Autoware's `inference_engine_tvm_config.hpp` (modelzoo version, network name,
backend, module path, device, input and output nodes with DLPack type codes and shapes), but
self-contained: it includes only <cstddef> and <cstdint>, so it compiles without tvm_utility or
TVM headers. C++17 (`inline constexpr`), as Autoware builds.

    OUT/x86_64/rpn_config.hpp
        namespace zoostore::models::rpn {
        inline constexpr char network_name[] = "rpn";
        inline constexpr bool has_version = true;
        inline constexpr ModelVersion modelzoo_version{1, 2, 0};
        inline constexpr TensorConfig network_inputs[] = {{"input.1", 2, 32, 1, "float32", 4, ...}};
        ...

`zoostore::check_version(v, supported, unsupported)` is the header-only version check the
ModelZoo's versioning asks for ("error on known unsupported versions and warning on unknown
versions"): it compares MAJOR.MINOR (Z is a convenience release) against the consumer's lists and
says `supported`, `unsupported` or `unknown`; the consumer decides to stop or warn.

The text depends only on its arguments (no dates, paths or host names): builds stay
byte-reproducible.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from zoostore.core.errors import UsageError
from zoostore.core.semver import parse_version
from zoostore.documents.descriptor import TensorSpec

#: DLPack's DLDataTypeCode (dlpack.h): kDLInt 0, kDLUInt 1, kDLFloat 2, kDLBfloat 4, kDLBool 6.
_DL_CODES = {"int": 0, "uint": 1, "float": 2, "bfloat": 4, "bool": 6}
#: dlpack.h DLDeviceType kDLCPU.
_KDLCPU = 1

_TYPES = """\
#ifndef ZOOSTORE_MODEL_CONFIG_TYPES_
#define ZOOSTORE_MODEL_CONFIG_TYPES_
namespace zoostore
{
struct ModelVersion
{
  int major;
  int minor;
  int patch;
};

// One input or output node. dtype_code is DLPack's DLDataTypeCode (kDLInt 0, kDLUInt 1,
// kDLFloat 2, kDLBfloat 4, kDLBool 6); a shape entry of -1 is a size fixed at run time.
struct TensorConfig
{
  const char * name;
  std::uint8_t dtype_code;
  std::uint8_t dtype_bits;
  std::uint16_t dtype_lanes;
  const char * dtype;
  std::size_t ndim;
  const std::int64_t * shape;
};

enum class VersionStatus { supported, unsupported, unknown };

// MAJOR.MINOR of `v` against the versions a consumer supports and the ones it knows it does not
// (patch releases never change the interface): supported, unsupported, else unknown.
template <std::size_t S, std::size_t U>
constexpr VersionStatus check_version(
  const ModelVersion & v, const ModelVersion (&supported)[S], const ModelVersion (&unsupported)[U])
{
  for (std::size_t i = 0; i < U; ++i) {
    if (unsupported[i].major == v.major && unsupported[i].minor == v.minor) {
      return VersionStatus::unsupported;
    }
  }
  for (std::size_t i = 0; i < S; ++i) {
    if (supported[i].major == v.major && supported[i].minor == v.minor) {
      return VersionStatus::supported;
    }
  }
  return VersionStatus::unknown;
}
}  // namespace zoostore
#endif  // ZOOSTORE_MODEL_CONFIG_TYPES_
"""


def identifier(name: str) -> str:
    """A C++ identifier for a model name: `yolo-v2.tiny` -> `yolo_v2_tiny`."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", name) or "model"
    return f"m_{ident}" if ident[0].isdigit() else ident


def header_name(model: str) -> str:
    """The file name of a model's header: `<identifier>_config.hpp`."""
    return f"{identifier(model)}_config.hpp"


def c_string(text: str) -> str:
    """A C++ string literal; octal escapes (always three digits) for anything not printable ASCII."""
    out = []
    for byte in text.encode("utf-8"):
        ch = chr(byte)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= byte < 127 and ch != "?":  # '?' escaped: no trigraphs
            out.append(ch)
        else:
            out.append(f"\\{byte:03o}")
    return '"' + "".join(out) + '"'


def _dtype(dtype: str) -> tuple[int, int]:
    if dtype == "bool":
        return _DL_CODES["bool"], 8
    m = re.fullmatch(r"(bfloat|float|uint|int)(\d+)", dtype)
    if not m:
        raise UsageError(f"no DLPack type code for dtype {dtype!r}: the C++ header cannot describe it")
    return _DL_CODES[m.group(1)], int(m.group(2))


def _nodes(kind: str, nodes: Sequence[TensorSpec]) -> list[str]:
    lines = []
    for i, n in enumerate(nodes):
        if n.shape:
            dims = ", ".join(str(d) if isinstance(d, int) else "-1" for d in n.shape)
            lines.append(f"inline constexpr std::int64_t {kind}{i}_shape[] = {{{dims}}};")
    lines.append(f"inline constexpr TensorConfig network_{kind}s[] = {{")
    for i, n in enumerate(nodes):
        code, bits = _dtype(n.dtype)
        shape = f"{kind}{i}_shape" if n.shape else "nullptr"
        lines.append(f"  {{{c_string(n.name)}, {code}, {bits}, 1, {c_string(n.dtype)}, {len(n.shape)}, {shape}}},")
    lines.append("};")
    lines.append(f"inline constexpr std::size_t num_{kind}s = {len(nodes)};")
    return lines


def render_config_header(
    *,
    model: str,
    arch: str,
    tvm_version: str,
    target: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    version: str | None = None,
    library: str = "deploy_lib.so",
    executor: str = "relax.vm",
    entry: str = "main",
) -> str:
    """The header text. `version` (semver, checked) is the zoo version of the model; without it
    `has_version` is false and `modelzoo_version` is {0, 0, 0} (publish can render it again
    with the version)."""
    ident = identifier(model)
    guard = f"ZOOSTORE__{ident.upper()}__{identifier(arch).upper()}__CONFIG_HPP_"
    parsed = parse_version(version) if version else None
    numbers = f"{parsed.major}, {parsed.minor}, {parsed.patch}" if parsed else "0, 0, 0"
    lines = [
        f"// {header_name(model)}: generated by 'zoostore build' for {arch}. Do not edit.",
        "// The fields of Autoware's inference_engine_tvm_config.hpp, without tvm_utility.",
        f"#ifndef {guard}",
        f"#define {guard}",
        "",
        "#include <cstddef>",
        "#include <cstdint>",
        "",
        _TYPES,
        f"namespace zoostore::models::{ident}",
        "{",
        f"inline constexpr char network_name[] = {c_string(model)};",
        f"inline constexpr bool has_version = {'true' if parsed else 'false'};",
        f"inline constexpr ModelVersion modelzoo_version{{{numbers}}};",
        f"inline constexpr char version[] = {c_string(version.strip() if version else '')};",
        f"inline constexpr char tvm_version[] = {c_string(tvm_version)};",
        f"inline constexpr char arch[] = {c_string(arch)};",
        f"inline constexpr char target[] = {c_string(target)};",
        'inline constexpr char network_backend[] = "llvm";',
        f"inline constexpr char executor[] = {c_string(executor)};",
        f"inline constexpr char network_module_path[] = {c_string('./' + library)};",
        f"inline constexpr char entry_function[] = {c_string(entry)};",
        f"inline constexpr int tvm_device_type = {_KDLCPU};  // kDLCPU",
        "inline constexpr int tvm_device_id = 0;",
        "",
        *_nodes("input", inputs),
        "",
        *_nodes("output", outputs),
        f"}}  // namespace zoostore::models::{ident}",
        f"#endif  // {guard}",
    ]
    return "\n".join(lines) + "\n"
