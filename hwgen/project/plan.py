# SPDX-License-Identifier: Apache-2.0
"""A build folder held in memory, then written all at once.

:class:`BuildPlan` is the set of files ``hwgen build`` produces (path → bytes, executable flag),
in the spirit of Amaranth's ``BuildPlan``: rendering never touches the disk, and :meth:`write`
builds the folder in a temporary sibling and renames it into place at the end, so a failure
leaves either the previous folder or nothing — never half a build. The same files in give the
same bytes out: paths are sorted and nothing records a time.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

__all__ = ["BuildPlan", "PlanFile"]

log = logging.getLogger(__name__)

# Paths stay portable and need no quoting in the Tcl and shell scripts that name them.
_PATH_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*")


@dataclass(frozen=True)
class PlanFile:
    """One file of a plan: its bytes and whether it is executable."""

    data: bytes
    executable: bool = False


class BuildPlan:
    """Files of a build folder, in memory until :meth:`write`."""

    def __init__(self) -> None:
        self._files: dict[str, PlanFile] = {}

    def add_file(self, path: str, content: str | bytes, *, executable: bool = False) -> None:
        """Add ``content`` (text is stored as UTF-8) at the relative POSIX ``path``."""
        parts = PurePosixPath(path).parts if isinstance(path, str) else ()
        if not parts or path.startswith("/") or not all(_PATH_PART.fullmatch(p) for p in parts):
            raise ValueError(
                f"plan path must be relative, with parts of letters, digits and _.+- (not starting with . or -), not {path!r}"
            )
        if path in self._files:
            raise ValueError(f"plan path must be added once, not twice: {path!r}")
        for other in self._files:
            if other.startswith(path + "/") or path.startswith(other + "/"):
                raise ValueError(f"plan path must not be both a file and a folder, not {path!r} beside {other!r}")
        if isinstance(content, str):
            content = content.encode("utf-8")
        if not isinstance(content, bytes):
            raise ValueError(f"plan file content must be str or bytes, not {type(content).__name__}")
        self._files[path] = PlanFile(content, bool(executable))

    def __contains__(self, path: object) -> bool:
        return path in self._files

    def __getitem__(self, path: str) -> bytes:
        return self._files[path].data

    def __len__(self) -> int:
        return len(self._files)

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._files))

    def files(self) -> list[tuple[str, PlanFile]]:
        """``(path, file)`` pairs sorted by path."""
        return sorted(self._files.items())

    def digest(self) -> str:
        """SHA-256 over every path, flag and content in path order: equal digests, equal folders."""
        h = hashlib.sha256()
        for path, f in self.files():
            h.update(f"{path}\0{int(f.executable)}\0{len(f.data)}\0".encode())
            h.update(f.data)
        return h.hexdigest()

    def write(self, out_dir: str | Path, *, force: bool = False) -> Path:
        """Write the folder to ``out_dir`` atomically and return its path.

        ``out_dir`` must be absent or empty unless ``force`` (then it is replaced as a whole).
        The folder is built in a temporary sibling and renamed into place at the end, so an
        error leaves ``out_dir`` as it was.
        """
        out = Path(out_dir).absolute()
        if out.exists() or out.is_symlink():
            if not out.is_dir() or out.is_symlink():
                raise ValueError(f"out must be a folder, not the file {out}")
            if any(out.iterdir()) and not force:
                raise ValueError(f"out folder {out} must be empty (or use --force to replace it), not holding files")
        parent = out.parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".hwgen-tmp", dir=parent))
        except OSError as exc:
            reason = "a file" if parent.is_file() else exc.strerror
            raise ValueError(f"out folder {out} must be in a writable folder, not {parent} ({reason})") from None
        try:
            os.chmod(tmp, 0o755)
            for path, f in self.files():
                target = tmp / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(f.data)
                os.chmod(target, 0o755 if f.executable else 0o644)
            self._replace(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        log.info("wrote %d files to %s", len(self._files), out)
        return out

    @staticmethod
    def _replace(tmp: Path, out: Path) -> None:
        """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and removed last."""
        if not out.exists():
            tmp.rename(out)
            return
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".hwgen-old", dir=out.parent))
        old.rmdir()
        out.rename(old)
        try:
            tmp.rename(out)
        except BaseException:
            old.rename(out)
            raise
        shutil.rmtree(old, ignore_errors=True)
