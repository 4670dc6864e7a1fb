"""`restore-test` steps that are not restic: prepare the scratch directory, verify what was
restored (file count, bytes, SHA-256 canaries), clean up. Run as steps of their own
(`python -m runner.engine.jobs.restoretest …`) so the engine supervises them like any tool (timeout,
cancel, masked log); `verify` prints one JSON line of stats the parser reads.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path


def prepare(directory: Path) -> int:
    if directory.is_symlink():  # rmtree would not clear it, cleanup not remove what lands there
        print(f"restore-test error: scratch directory {directory} is a symlink: refused",
              file=sys.stderr)
        return 1
    shutil.rmtree(directory, ignore_errors=True)
    from runner.fsutil import private_dir

    private_dir(directory)  # it and every parent it makes 0700, whatever the umask
    print(f"restore-test: scratch directory {directory} ready")
    return 0


def cleanup(directory: Path, keep: bool) -> int:
    if keep:
        print(f"restore-test: keeping {directory} (keep = true)")
        return 0
    shutil.rmtree(directory, ignore_errors=True)
    print(f"restore-test: removed {directory}")
    return 0


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _restored(directory: Path, original: str) -> Path | None:
    """Where a canary's original absolute path landed under the restore target."""
    candidate = directory / original.lstrip("/")
    return candidate if candidate.is_file() else None


def verify(directory: Path, min_files: int, canaries: dict[str, str]) -> int:
    files = size = 0
    for root, _dirs, names in os.walk(directory):
        for name in names:
            path = Path(root) / name
            if path.is_file() and not path.is_symlink():
                files += 1
                size += path.stat().st_size
    results = {}
    for original, expected in canaries.items():
        found = _restored(directory, original)
        if found is None:
            results[original] = "missing"
        else:
            results[original] = "passed" if _sha256(found) == expected.lower() else "mismatch"
    passed = sum(r == "passed" for r in results.values())
    problems = []
    if files < min_files:
        problems.append(f"{files} files restored, fewer than min_files = {min_files}")
    problems += [f"canary {path}: {result}" for path, result in results.items()
                 if result != "passed"]
    print(json.dumps({"restore_test": {
        "files_restored": files, "bytes_restored": size, "min_files": min_files,
        "canaries_total": len(results), "canaries_passed": passed,
        "canaries_failed": len(results) - passed, "canaries": results,
        "verdict": "failed" if problems else "passed"}}))
    for problem in problems:
        print(f"restore-test error: {problem}", file=sys.stderr)
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m runner.engine.jobs.restoretest")
    p.add_argument("action", choices=("prepare", "verify", "cleanup"))
    p.add_argument("directory", type=Path)
    p.add_argument("--min-files", type=int, default=1)
    p.add_argument("--canary", action="append", default=[], metavar="PATH=SHA256")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args(argv)
    if args.action == "prepare":
        return prepare(args.directory)
    if args.action == "cleanup":
        return cleanup(args.directory, args.keep)
    canaries = dict(c.rsplit("=", 1) for c in args.canary)
    return verify(args.directory, args.min_files, canaries)


if __name__ == "__main__":
    sys.exit(main())
