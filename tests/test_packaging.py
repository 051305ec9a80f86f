# SPDX-License-Identifier: Apache-2.0
"""A plain, non-editable install carries every subpackage, template and board file."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Source folder → installed package, as pyproject.toml maps them.
MAPPED = {"hwgen": "hwgen", "rtl": "hwgen/rtl", "cosim": "hwgen/cosim",
          "hls_templates": "hwgen/hls_templates", "boards": "hwgen/boards"}
DATA_GLOBS = ("*.py", "*.h", "*.hpp", "*.cpp", "*.j2", "*.tcl", "*.yaml", "*.v")


def expected_files() -> set[str]:
    files = set()
    for src, dst in MAPPED.items():
        base = ROOT / src
        for pattern in DATA_GLOBS:
            for path in base.rglob(pattern):
                rel = path.relative_to(base)
                if "__pycache__" in rel.parts or (src == "hwgen" and rel.parts[0] in {"rtl", "cosim"}):
                    continue
                files.add(f"{dst}/{rel.as_posix()}")
    return files


def test_wheel_contains_every_source_file(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", tmp_path, ROOT],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("hwgen-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(expected_files() - names)
    assert not missing, f"the wheel lacks {missing}: list new packages/data in pyproject.toml"

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", site, wheel],
                   check=True, capture_output=True)
    probe = (
        "import json, hwgen, hwgen.hls_templates as t, hwgen.boards as b, hwgen.rtl, hwgen.cosim;"
        "print(json.dumps({'pkg': hwgen.__file__, 'templates': sorted(p.name for p in t.TEMPLATE_DIR.iterdir()),"
        " 'boards': sorted(p.name for p in b.BOARD_DIR.glob('*.yaml'))}))"
    )
    # Run outside the source tree with the installed copy first on the path.
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={"PYTHONPATH": str(site)},
                         check=True, capture_output=True, text=True).stdout
    found = json.loads(out)
    assert Path(found["pkg"]).is_relative_to(site)
    assert {p.name for p in (ROOT / "boards").glob("*.yaml")} == set(found["boards"])
    assert "ultra96.yaml" in found["boards"]
    templates = {p.name for p in (ROOT / "hls_templates").iterdir() if p.suffix in {".h", ".j2"}}
    assert templates <= set(found["templates"])
