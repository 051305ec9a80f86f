# SPDX-License-Identifier: Apache-2.0
"""Save and load graphs as plain files: ``graph.yaml`` (structure, shapes, formats) + ``graph.npz``.

No pickle. Output is byte-identical for equal graphs: the YAML keeps a fixed key order and the
``.npz`` is written with fixed zip timestamps (NumPy's ``savez`` stamps the current time), so
``save → load → save`` reproduces the same bytes.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from hwgen.ir.graph import Graph, InputDistribution, Node, Tensor
from hwgen.qfx import QFmt

__all__ = ["save_graph", "load_graph", "graph_to_dict", "graph_from_dict", "npz_bytes", "write_npz", "read_npz",
           "FORMAT_VERSION"]

#: Version of the saved graph layout; a file with another version is refused.
FORMAT_VERSION = 1
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An uncompressed ``.npz`` of ``arrays`` (in their order) that ``np.load`` reads, byte-identical per content.

    ``np.savez`` stamps each member with the current time; here every member carries a fixed date.
    """
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for key, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())
    return out.getvalue()


def write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` as :func:`npz_bytes` does."""
    Path(path).write_bytes(npz_bytes(arrays))


def read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (pickled objects refused)."""
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def graph_to_dict(graph: Graph) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The YAML document of ``graph`` and the arrays that go with it (keys ``value/…``, ``raw/…``)."""
    arrays: dict[str, np.ndarray] = {}
    tensors = []
    for tensor in graph.tensors:
        entry: dict[str, Any] = {"name": tensor.name, "shape": list(tensor.shape)}
        if tensor.fmt is not None:
            entry["format"] = str(tensor.fmt)
        if tensor.value is not None:
            arrays[f"value/{tensor.name}"] = tensor.value
            entry["value"] = True
        if tensor.raw is not None:
            arrays[f"raw/{tensor.name}"] = tensor.raw
            entry["raw"] = True
        tensors.append(entry)
    nodes = [
        {
            "name": node.name,
            "op": node.op,
            "inputs": list(node.inputs),
            "outputs": list(node.outputs),
            **({"attrs": {k: _plain(v) for k, v in node.attrs}} if node.attrs else {}),
        }
        for node in graph.nodes
    ]
    document = {
        "hwgen_graph": FORMAT_VERSION,
        "name": graph.name,
        "description": graph.description,
        "inputs": list(graph.inputs),
        "outputs": list(graph.outputs),
        "input_distributions": [
            {"tensor": d.tensor, "kind": d.kind, "scale": float(d.scale)} for d in graph.input_distributions
        ],
        "tensors": tensors,
        "nodes": nodes,
    }
    return document, arrays


def _tuple_attr(value: Any) -> Any:
    return tuple(_tuple_attr(v) for v in value) if isinstance(value, list) else value


def graph_from_dict(document: dict[str, Any], arrays: dict[str, np.ndarray]) -> Graph:
    """Rebuild a graph from :func:`graph_to_dict` output."""
    if not isinstance(document, dict) or document.get("hwgen_graph") != FORMAT_VERSION:
        found = document.get("hwgen_graph") if isinstance(document, dict) else None
        raise ValueError(f"saved graph version must be {FORMAT_VERSION}, not {found!r}")
    tensors = []
    for entry in document["tensors"]:
        name = entry["name"]
        tensors.append(
            Tensor(
                name,
                tuple(entry["shape"]),
                QFmt.parse(entry["format"]) if "format" in entry else None,
                value=arrays[f"value/{name}"] if entry.get("value") else None,
                raw=arrays[f"raw/{name}"] if entry.get("raw") else None,
            )
        )
    nodes = [
        Node(
            entry["name"],
            entry["op"],
            tuple(entry["inputs"]),
            tuple(entry["outputs"]),
            {k: _tuple_attr(v) for k, v in entry.get("attrs", {}).items()},
        )
        for entry in document["nodes"]
    ]
    return Graph(
        name=document["name"],
        inputs=tuple(document["inputs"]),
        outputs=tuple(document["outputs"]),
        tensors=tuple(tensors),
        nodes=tuple(nodes),
        input_distributions=tuple(
            InputDistribution(d["tensor"], d["kind"], float(d["scale"])) for d in document["input_distributions"]
        ),
        description=document.get("description", ""),
    )


def save_graph(graph: Graph, directory: str | Path) -> Path:
    """Write ``graph.yaml`` and ``graph.npz`` into ``directory`` (created if needed); return it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    document, arrays = graph_to_dict(graph)
    text = yaml.safe_dump(document, sort_keys=False, default_flow_style=None, width=120, allow_unicode=True)
    (directory / "graph.yaml").write_text(text, encoding="utf-8")
    write_npz(directory / "graph.npz", arrays)
    return directory


def load_graph(directory: str | Path) -> Graph:
    """Read a graph written by :func:`save_graph` (not verified: callers run ``verify``)."""
    directory = Path(directory)
    document = yaml.safe_load((directory / "graph.yaml").read_text(encoding="utf-8"))
    return graph_from_dict(document, read_npz(directory / "graph.npz"))
