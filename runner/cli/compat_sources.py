"""restic-backup-helper's `sources-report` (docs/compat-commands.md): what the backup jobs
would read — each source path, `--files-from` list and `--exclude-file` — readable or not, with
its files and bytes, printed and written as the helper's `last-sources-report.json`."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from runner.cli.compat_tools import EXIT_USAGE, parser
from runner.cli.output import echo
from runner.cli.peerdoc import on_off, peer_document, write_peer_document
from runner.configuration.load import load_config


def _arg_values(args: tuple[str, ...], *flags: str) -> list[str]:
    """The values of `--flag V` and `--flag=V` in restic arguments."""
    found = []
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name in flags and eq:
            found.append(value)
        elif arg in flags and i + 1 < len(args):
            found.append(args[i + 1])
    return found


FILES_FROM_FLAGS = ("--files-from", "--files-from-verbatim", "--files-from-raw")
EXCLUDE_FILE_FLAGS = ("--exclude-file", "--iexclude-file")


def _measure(path: Path, depth: int | None) -> tuple[int, int]:
    """Regular files (those within `depth` levels, as `find -maxdepth`) and their bytes
    (the whole tree's, apparent size)."""
    files = size = 0
    top = len(path.parts)
    for root, _dirs, names in os.walk(path, onerror=lambda _e: None):
        counted = depth is None or len(Path(root).parts) - top < depth
        for name in names:
            item = Path(root) / name
            if item.is_file() and not item.is_symlink():
                files += counted
                size += item.lstat().st_size
    return files, size


def _path_type(path: Path) -> str:
    if not os.path.lexists(path) or not path.exists():
        return "missing"
    return ("symlink" if path.is_symlink() else "directory" if path.is_dir()
            else "file" if path.is_file() else "other")


def _source_entry(source: str, no_size: bool, depth: int | None) -> dict[str, Any]:
    path = Path(source)
    kind = _path_type(path)
    readable = kind != "missing" and os.access(path, os.R_OK)
    files = size = 0
    if readable and no_size:
        files = size = -1
    elif readable:
        files, size = _measure(path, depth) if path.is_dir() else (1, path.stat().st_size)
    return {"path": source, "readable": readable, "type": kind, "files": files, "bytes": size}


def _lines(path: str) -> list[str] | None:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None
    return [line for line in text.splitlines() if line.strip()
            and not line.lstrip().startswith("#")]


def sources_report(config_file: str | None, args: list[str]) -> int:
    p = parser("sources-report", "What the backup would read: each source path, --files-from "
                                 "and --exclude-file file, readable or not, with its size.")
    p.add_argument("--source", action="append", default=[])
    p.add_argument("--files-from", action="append", default=[])
    p.add_argument("--no-size", action="store_true")
    p.add_argument("--depth", type=int, default=None)
    opts = p.parse_args(args)
    if opts.depth is not None and opts.depth < 0:
        p.error("--depth must be 0 or more")
    started = time.time()
    config = load_config(config_file)
    backups = [j for j in config.jobs.values() if j.kind == "backup"]
    sources = list(dict.fromkeys([p for j in backups for p in j.paths] + opts.source))
    lists = list(dict.fromkeys([f for j in backups for f in _arg_values(j.args, *FILES_FROM_FLAGS)]
                               + opts.files_from))
    excludes = list(dict.fromkeys(f for j in backups
                                  for f in _arg_values(j.args, *EXCLUDE_FILE_FLAGS)))
    if not sources and not lists:
        echo("restic-runner: error: no sources: no backup paths, --source or --files-from",
             err=True)
        return EXIT_USAGE
    report = [_source_entry(source, opts.no_size, opts.depth) for source in sources]
    for entry in report:
        line = f"source {entry['path']}: {entry['type']}, " + (
            "readable" if entry["readable"] else "NOT readable")
        if entry["readable"] and entry["files"] >= 0:
            line += f", {entry['files']} file(s), {entry['bytes']} bytes"
        echo(line)
    listings = []
    for listing in lists:
        entries = _lines(listing)
        missing = [e for e in entries or [] if not os.path.exists(e)]
        listings.append({"path": listing, "readable": entries is not None,
                         "lines": len(entries or []), "missing_entries": len(missing)})
        echo(f"files-from {listing}: " + (f"{len(entries)} entries, {len(missing)} missing"
                                          if entries is not None else "NOT readable"))
    exclusions = []
    for exclude in excludes:
        patterns = _lines(exclude)
        exclusions.append({"path": exclude, "readable": patterns is not None,
                           "patterns": len(patterns or [])})
        echo(f"exclude-file {exclude}: " + (f"{len(patterns)} pattern(s)"
                                            if patterns is not None else "NOT readable"))
    errors = (sum(not e["readable"] for e in report)
              + sum(e["missing_entries"] if e["readable"] else 1 for e in listings)
              + sum(not e["readable"] for e in exclusions))
    total_files = sum(max(e["files"], 0) for e in report)
    total_bytes = sum(max(e["bytes"], 0) for e in report)
    echo(f"{len(sources)} source(s), {len(lists)} files-from list(s), {len(excludes)} "
         f"exclude-file(s), {total_files} file(s), {total_bytes} bytes, {errors} error(s)")
    document = peer_document(config, "sources-report", 0, started, {
        "backup_root_dir": " ".join(p for j in backups for p in j.paths),
        "sources_count": len(sources), "files_from_count": len(lists),
        "exclude_files_count": len(excludes), "total_files": total_files,
        "total_bytes": total_bytes, "errors_count": errors, "no_size": on_off(opts.no_size),
        "depth_limit": "unlimited" if opts.depth is None else opts.depth},
        {"sources": report, "files_from": listings, "exclude_files": exclusions})
    for problem in write_peer_document(config, document):
        echo(f"warning: {problem}", err=True)
    return 0
