# SPDX-License-Identifier: Apache-2.0
"""BuildPlan: files in memory, written all at once or not at all, the same bytes every time."""

import os
import stat
from pathlib import Path

import pytest

from hwgen.project import BuildPlan


def sample_plan():
    plan = BuildPlan()
    plan.add_file("rtl/top.v", "module top; endmodule\n")
    plan.add_file("build.sh", "#!/bin/sh\necho built\n", executable=True)
    plan.add_file("data/memory.bin", bytes(range(256)))
    plan.add_file("vivado/build_rtl.tcl", "puts hi\n")
    return plan


def tree(folder):
    """{relative path: (bytes, executable)} of every file under ``folder``."""
    return {
        p.relative_to(folder).as_posix(): (p.read_bytes(), bool(p.stat().st_mode & stat.S_IXUSR))
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


def leftovers(parent, name):
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


def test_write_creates_exactly_the_plan(tmp_path):
    plan = sample_plan()
    out = plan.write(tmp_path / "deep" / "out")
    assert out == (tmp_path / "deep" / "out").absolute()
    assert tree(out) == {path: (f.data, f.executable) for path, f in plan.files()}
    assert list(plan) == sorted(plan) == ["build.sh", "data/memory.bin", "rtl/top.v", "vivado/build_rtl.tcl"]
    assert stat.S_IMODE((out / "rtl/top.v").stat().st_mode) == 0o644
    assert stat.S_IMODE((out / "build.sh").stat().st_mode) == 0o755
    assert leftovers(out.parent, "out") == []


def test_same_files_give_the_same_digest_and_bytes(tmp_path):
    a, b = sample_plan(), sample_plan()
    assert a.digest() == b.digest()
    assert tree(a.write(tmp_path / "a")) == tree(b.write(tmp_path / "b"))
    # Insertion order does not matter; content and the executable flag do.
    reordered = BuildPlan()
    for path, f in reversed(a.files()):
        reordered.add_file(path, f.data, executable=f.executable)
    assert reordered.digest() == a.digest()
    flipped = BuildPlan()
    for path, f in a.files():
        flipped.add_file(path, f.data, executable=(path == "rtl/top.v") or f.executable)
    assert flipped.digest() != a.digest()


def test_empty_existing_folder_is_used(tmp_path):
    (tmp_path / "out").mkdir()
    out = sample_plan().write(tmp_path / "out")
    assert "build.sh" in tree(out)


def test_non_empty_folder_is_refused_without_force(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    with pytest.raises(ValueError) as err:
        sample_plan().write(out)
    assert str(err.value) == f"out folder {out} must be empty (or use --force to replace it), not holding files"
    assert tree(out) == {"mine.txt": (b"keep me", False)}


def test_force_replaces_the_whole_folder(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old build")
    sample_plan().write(out, force=True)
    assert tree(out) == tree(sample_plan().write(tmp_path / "fresh"))
    assert leftovers(tmp_path, "out") == []


def test_out_must_be_a_folder_in_a_writable_folder(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError) as err:
        sample_plan().write(tmp_path / "file")
    assert str(err.value) == f"out must be a folder, not the file {tmp_path / 'file'}"
    # A parent that is a file cannot hold the folder, even for root.
    target = tmp_path / "file" / "out"
    with pytest.raises(ValueError) as err:
        sample_plan().write(target, force=True)
    assert str(err.value) == f"out folder {target} must be in a writable folder, not {tmp_path / 'file'} (a file)"
    # /proc refuses new entries, whoever asks.
    with pytest.raises(ValueError, match=r"^out folder /proc/hwgen-out must be in a writable folder, not /proc \(.+\)$"):
        sample_plan().write("/proc/hwgen-out")


def _fail_on_third_write(monkeypatch):
    real = Path.write_bytes
    calls = []

    def write_bytes(self, data):
        calls.append(self.name)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    return calls


def test_failure_mid_write_leaves_nothing(tmp_path, monkeypatch):
    calls = _fail_on_third_write(monkeypatch)
    with pytest.raises(OSError, match="No space left on device"):
        sample_plan().write(tmp_path / "out")
    assert len(calls) == 3
    assert sorted(os.listdir(tmp_path)) == []


def test_failure_mid_write_keeps_the_previous_build(tmp_path, monkeypatch):
    out = sample_plan().write(tmp_path / "out")
    before = tree(out)
    newer = BuildPlan()
    for name in ("a.txt", "b.txt", "c.txt", "d.txt"):
        newer.add_file(name, name)
    _fail_on_third_write(monkeypatch)
    with pytest.raises(OSError):
        newer.write(out, force=True)
    assert tree(out) == before
    assert sorted(os.listdir(tmp_path)) == ["out"]


def test_failed_final_rename_restores_the_previous_build(tmp_path, monkeypatch):
    out = sample_plan().write(tmp_path / "out")
    before = tree(out)
    real = Path.rename

    def rename(self, target):
        if self.name.endswith(".hwgen-tmp"):
            raise OSError(18, "Invalid cross-device link")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", rename)
    newer = BuildPlan()
    newer.add_file("new.txt", "new")
    with pytest.raises(OSError, match="cross-device"):
        newer.write(out, force=True)
    assert tree(out) == before
    assert sorted(os.listdir(tmp_path)) == ["out"]


@pytest.mark.parametrize("path, message", [
    ("/etc/passwd", "plan path must be relative, with parts of letters, digits and _.+- (not starting with . or -), not '/etc/passwd'"),
    ("../escape.v", "plan path must be relative, with parts of letters, digits and _.+- (not starting with . or -), not '../escape.v'"),
    ("rtl/my top.v", "plan path must be relative, with parts of letters, digits and _.+- (not starting with . or -), not 'rtl/my top.v'"),
    ("", "plan path must be relative, with parts of letters, digits and _.+- (not starting with . or -), not ''"),
    ("build.sh", "plan path must be added once, not twice: 'build.sh'"),
    ("rtl", "plan path must not be both a file and a folder, not 'rtl' beside 'rtl/top.v'"),
    ("build.sh/inner", "plan path must not be both a file and a folder, not 'build.sh/inner' beside 'build.sh'"),
])
def test_bad_paths_are_refused(path, message):
    plan = sample_plan()
    with pytest.raises(ValueError) as err:
        plan.add_file(path, "x")
    assert str(err.value) == message
    with pytest.raises(ValueError, match=r"^plan file content must be str or bytes, not int$"):
        BuildPlan().add_file("x.txt", 3)
