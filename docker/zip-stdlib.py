"""Build-time step of the image (Dockerfile, `runtime` stage): Python's standard library as
compiled modules in /usr/lib/python311.zip, which CPython puts on sys.path before
/usr/lib/python3.11, instead of sources plus __pycache__ (docs/deployment.md, "Image size").

What stays in /usr/lib/python3.11: os.py (the landmark CPython finds its prefix by), the C
extension modules (lib-dynload), the build configuration directory, and any data a module
reads from its own directory. Tracebacks through the standard library show no source lines;
restic-runner's own modules keep theirs."""

from __future__ import annotations

import shutil
import sys
import zipfile
from pathlib import Path

LIB = Path(sys.argv[1] if len(sys.argv) > 1 else "/usr/lib/python3.11")
ARCHIVE = LIB.parent / f"python{sys.version_info.major}{sys.version_info.minor}.zip"
KEEP = {"os.py", "lib-dynload", "site-packages", "dist-packages", "__pycache__"}


def zipped_entries() -> list[Path]:
    """Top-level modules and packages of the standard library that go into the archive."""
    entries = []
    for entry in sorted(LIB.iterdir()):
        if entry.name in KEEP or entry.name.startswith("config-"):
            continue
        if entry.suffix == ".py" or (entry.is_dir() and (entry / "__init__.py").exists()):
            entries.append(entry)
    return entries


def has_data(package: Path) -> bool:
    """Files other than modules in a package (read from its directory at run time)."""
    return any(p.is_file() and p.suffix not in (".py", ".pyc") for p in package.rglob("*"))


def main() -> int:
    entries = [e for e in zipped_entries() if not (e.is_dir() and has_data(e))]
    with zipfile.PyZipFile(ARCHIVE, "w", compression=zipfile.ZIP_DEFLATED, optimize=0) as zf:
        for entry in entries:
            zf.writepy(str(entry))
    for entry in entries:
        if entry.is_dir():
            shutil.rmtree(entry)
        else:
            entry.unlink()
    for cached in (LIB / "__pycache__").glob("*.pyc"):
        if not cached.name.startswith("os."):
            cached.unlink()
    print(f"{ARCHIVE}: {len(entries)} modules and packages, {ARCHIVE.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
