"""The catalog of a zoo: the table a zoo's README links to (Autoware's model table, the ONNX
Model Zoo's per-model tables), as Markdown, HTML or data (`catalog --json`).

Per version: tags, archs, size, date, the ONNX facts publish recorded (opset, IR version,
inputs with shapes and types, test data results), runtime requirements, the maintainer's
metadata (accuracy and the like), and, with `download_base`, a link to the version's folder
in a plain mirror written by `zoostore export` (`{base}/{model}/{version}/`).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

from zoostore.core.units import human_bytes
from zoostore.repository import Store

#: Metadata keys shown in the catalog when present (model-level or version-level).
KEY_META = ("task", "framework", "dataset", "acc@1", "accuracy", "num_classes", "license", "model_license")
COLUMNS = ("Model", "Version", "Tags", "Archs", "Size", "Published", "ONNX", "Inputs", "Requires", "Metadata", "Files")


def catalog_entries(zoo: Store) -> list[dict[str, Any]]:
    """The catalog as data (`zoostore catalog --json`): one entry per model, newest version first."""
    out: list[dict[str, Any]] = []
    for name in zoo.models():
        m = zoo.manifest(name)
        tags_by_version: dict[str, list[str]] = {}
        for t, v in sorted(m.tags.items()):
            tags_by_version.setdefault(v, []).append(t)
        versions = []
        for v in reversed(m.sorted_versions()):
            r = m.versions[v]
            versions.append({"version": v, "tags": tags_by_version.get(v, []), "archs": r.archs, "size": r.size,
                             "published": r.published.isoformat(), "yanked": r.yanked or None,
                             "requires": dict(r.requires), "meta": dict(r.meta)})
        out.append({"model": name, "summary": m.summary, "latest": m.latest(), "meta": dict(m.meta),
                    "versions": versions})
    return out


def _onnx_cells(meta: Mapping[str, Any]) -> tuple[str, str]:
    """(opset and IR version, inputs) from the `onnx` metadata publish recorded."""
    facts: list[str] = []
    inputs: list[str] = []
    builds = meta.get("builds")  # each arch's build.toml: its own run of the test data
    runs = [(arch, b.get("test_data")) for arch, b in sorted(builds.items()) if isinstance(b, Mapping)] \
        if isinstance(builds, Mapping) else []
    runs.append(("", meta.get("test_data")))  # stores published before builds were kept per arch
    for arch, built in runs:
        if isinstance(built, Mapping) and built.get("found"):
            facts.append(f"TVM{' ' + arch if arch else ''} tests {built.get('passed')}/{built.get('found')}")
    onnx = meta.get("onnx")
    if not isinstance(onnx, Mapping):
        return "; ".join(facts), ""
    for path, f in sorted(onnx.items()):
        if not isinstance(f, Mapping):
            continue
        opset = (f.get("opsets") or {}).get("ai.onnx") if isinstance(f.get("opsets"), Mapping) else None
        fact = f"opset {opset}, IR {f.get('ir_version')}" if opset else f"IR {f.get('ir_version')}"
        data = f.get("test_data")
        if isinstance(data, Mapping) and data.get("found"):
            fact += f", tests {data.get('passed')}/{data.get('found')}"
        facts.append(fact if len(onnx) == 1 else f"{path}: {fact}")
        for node in f.get("inputs") or []:
            if isinstance(node, Mapping):
                shape = "×".join(str(d) for d in node.get("shape") or [])
                inputs.append(f"{node.get('name')} {node.get('dtype')}[{shape}]")
    return "; ".join(facts), ", ".join(inputs)


def _rows(zoo: Store, download_base: str | None) -> list[tuple[bool, list[str]]]:
    """(first row of its model, plain-text cells) for every version, newest first."""
    rows: list[tuple[bool, list[str]]] = []
    for entry in catalog_entries(zoo):
        model_meta = entry["meta"]
        for i, v in enumerate(entry["versions"]):
            meta = {**{k: model_meta[k] for k in KEY_META if k in model_meta},
                    **{k: v["meta"][k] for k in KEY_META if k in v["meta"]}}
            onnx, inputs = _onnx_cells(v["meta"])
            version = v["version"] + (f" (yanked: {v['yanked']})" if v["yanked"] else "")
            link = f"{download_base.rstrip('/')}/{entry['model']}/{v['version']}/" if download_base else ""
            rows.append((i == 0, [
                entry["model"] if i == 0 else "", version, ", ".join(v["tags"]), ", ".join(v["archs"]),
                human_bytes(v["size"]), v["published"][:10], onnx, inputs,
                ", ".join(f"{k} {x}" for k, x in sorted(v["requires"].items())),
                ", ".join(f"{k}={x}" for k, x in meta.items()), link,
            ]))
            if i == 0 and entry["summary"]:
                rows[-1][1][0] += "\n" + entry["summary"]
    return rows


def _md(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", "<br>")


def catalog_markdown(zoo: Store, *, download_base: str | None = None) -> str:
    lines = [
        "# Model catalog",
        "",
        f"Generated by `zoostore catalog` from `{zoo.url}`. Newest versions first; "
        "*latest* is the highest non-prerelease, non-yanked version.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for first, cells in _rows(zoo, download_base):
        name, _, summary = cells[0].partition("\n")
        cells = [f"**{_md(name)}**" + (f"<br>{_md(summary)}" if summary else "") if first else "",
                 *(_md(c) for c in cells[1:-1]), f"[files]({cells[-1]})" if cells[-1] else ""]
        if "(yanked: " in cells[1]:
            number, _, reason = cells[1].partition(" (yanked: ")
            cells[1] = f"~~{number}~~ (yanked: {reason}"
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def catalog_html(zoo: Store, *, download_base: str | None = None) -> str:
    """A standalone HTML page with the same table (escaped: names and metadata are data)."""
    out = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8"><title>Model catalog</title>',
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;vertical-align:top}"
        ".yanked{text-decoration:line-through}</style></head><body>",
        "<h1>Model catalog</h1>",
        f"<p>Generated by <code>zoostore catalog</code> from <code>{html.escape(zoo.url)}</code>. "
        "Newest versions first.</p>",
        "<table><thead><tr>" + "".join(f"<th>{c}</th>" for c in COLUMNS) + "</tr></thead><tbody>",
    ]
    for first, cells in _rows(zoo, download_base):
        name, _, summary = cells[0].partition("\n")
        tds = [f"<td><b>{html.escape(name)}</b>" + (f"<br>{html.escape(summary)}" if summary else "") + "</td>"
               if first else "<td></td>"]
        version = html.escape(cells[1])
        tds.append(f'<td class="yanked">{version}</td>' if "(yanked: " in cells[1] else f"<td>{version}</td>")
        tds += [f"<td>{html.escape(c)}</td>" for c in cells[2:-1]]
        tds.append(f'<td><a href="{html.escape(cells[-1], quote=True)}">files</a></td>' if cells[-1] else "<td></td>")
        out.append("<tr>" + "".join(tds) + "</tr>")
    out += ["</tbody></table>", "</body></html>"]
    return "\n".join(out) + "\n"
