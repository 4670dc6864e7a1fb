"""restic's and rclone's own human text, rendered from the JSON they print with `--json` and
`--use-json-log`: the run log, the mail body and `<job>-last.log` read like the tools' text
output (and like restic-backup-helper's logs, which hold that text), while the record keeps the
numbers (docs/runs.md). The formats follow restic 0.14-0.18's and rclone's text output.

Every string the tools supply (a file name, an error message, a host name) goes through
`printable` first: a name holding a newline or a terminal escape must not become a line of its
own ("finished: succeeded") or repaint the terminal of whoever reads the log
(docs/runs.md, "Control characters")."""

from __future__ import annotations

from typing import Any

from security.controlchars import printable, printable_lines


def _text(value: object) -> str:
    """A value from the tools' JSON, printable."""
    return "" if value is None else printable(str(value))


def format_bytes(n: float) -> str:
    """restic's `ui.FormatBytes`: `366 B`, `1.234 KiB`, `5.000 MiB` (three decimals)."""
    for shift, unit in ((40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.3f} {unit}"
    return f"{int(n)} B"


def format_seconds(seconds: float) -> str:
    """restic's `ui.FormatSeconds`: `0:05`, `12:03`, `1:02:03`."""
    s = max(int(seconds), 0)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    return f"{hours}:{minutes:02d}:{s:02d}" if hours else f"{minutes}:{s:02d}"


def _number(doc: dict[str, Any], key: str) -> float:
    """A field that should be a number; anything else (a damaged line) counts as 0."""
    value = doc.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and value == value \
            and abs(value) != float("inf"):
        return value
    return 0


def _int(doc: dict[str, Any], key: str) -> int:
    return int(_number(doc, key))


def _words(value: object) -> str:
    """A list of names (tags, paths) as restic's tables write it; anything else as text."""
    if isinstance(value, list):
        return ",".join(_text(v) for v in value)
    return _text(value)


def backup_summary(doc: dict[str, Any], verbose: bool = False) -> str:
    """`restic backup`'s closing lines from its JSON summary. restic 0.14 reports no packed
    size (`data_added_packed`): its line then has no `(… stored)`. `verbose`: restic -v also
    prints the blob counts."""
    dry_run = doc.get("dry_run") is True
    lines = ["",
             f"Files:       {_int(doc, 'files_new'):5d} new, {_int(doc, 'files_changed'):5d} "
             f"changed, {_int(doc, 'files_unmodified'):5d} unmodified",
             f"Dirs:        {_int(doc, 'dirs_new'):5d} new, {_int(doc, 'dirs_changed'):5d} "
             f"changed, {_int(doc, 'dirs_unmodified'):5d} unmodified"]
    if verbose:
        lines += [f"Data Blobs:  {_int(doc, 'data_blobs'):5d} new",
                  f"Tree Blobs:  {_int(doc, 'tree_blobs'):5d} new"]
    added = f"{'Would add' if dry_run else 'Added'} to the repository: " \
            f"{format_bytes(_int(doc, 'data_added')):<5}"
    if "data_added_packed" in doc:
        added += f" ({format_bytes(_int(doc, 'data_added_packed')):<5} stored)"
    lines += [added, "",
              f"processed {_int(doc, 'total_files_processed')} files, "
              f"{format_bytes(_int(doc, 'total_bytes_processed'))} in "
              f"{format_seconds(_number(doc, 'total_duration'))}"]
    snapshot = doc.get("snapshot_id")
    if isinstance(snapshot, str) and snapshot and not dry_run:
        lines.append(f"snapshot {printable(snapshot[:8])} saved")
    return "\n".join(lines) + "\n"


def restore_summary(doc: dict[str, Any]) -> str:
    """`restic restore` 0.17+'s closing line (`Summary: Restored 7 files/dirs (10 B) in 0:00`),
    the line restic-backup-helper's restore read its numbers from."""
    files, total_files = _int(doc, "files_restored"), _int(doc, "total_files")
    size, total_size = _int(doc, "bytes_restored"), _int(doc, "total_bytes")
    if files == total_files and size == total_size:
        done = f"{total_files} files/dirs ({format_bytes(total_size)})"
    else:
        done = (f"{files} / {total_files} files/dirs ({format_bytes(size)} / "
                f"{format_bytes(total_size)})")
    line = f"Summary: Restored {done} in {format_seconds(_number(doc, 'seconds_elapsed'))}"
    if _int(doc, "files_skipped"):
        line += (f", skipped {_int(doc, 'files_skipped')} files/dirs "
                 f"{format_bytes(_int(doc, 'bytes_skipped'))}")
    return line + "\n"


def verbose_item(doc: dict[str, Any]) -> str:
    """One `restic backup -v` line (restic -vv's wording) from a `verbose_status` document."""
    action, item = _text(doc.get("action", "")), _text(doc.get("item", ""))
    duration = _number(doc, "duration")
    if action == "scan_finished":
        return (f"scan finished in {duration:.3f}s: {_int(doc, 'total_files')} files, "
                f"{format_bytes(_int(doc, 'data_size'))}\n")
    if action in ("new", "modified"):
        stored = (f", {format_bytes(_int(doc, 'data_size_in_repo'))} stored"
                  if action == "modified" else "")
        return (f"{action:<9} {item}, saved in {duration:.3f}s "
                f"({format_bytes(_int(doc, 'data_size'))} added{stored})\n")
    return f"{action:<9} {item}\n"


def check_summary(doc: dict[str, Any]) -> str:
    """`restic check` 0.18's JSON summary as its text (0.14 prints text even with --json)."""
    errors = _int(doc, "num_errors")
    if errors == 0:
        return "no errors were found\n"
    return f"{errors} errors were found\n"


def error_line(doc: dict[str, Any], message: str) -> str:
    """An `error` (one item that could not be read) or `exit_error` (restic's last word), on
    one line."""
    if doc.get("message_type") == "exit_error":
        return printable(message.rstrip("\n")) + "\n"
    return f"error: {printable(message)}\n"


def _table(rows: list[list[str]], header: list[str]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def fmt(row: list[str]) -> str:
        return "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()

    rule = "-" * len(fmt(["x" * w for w in widths]))
    return [fmt(header), rule, *(fmt(r) for r in rows), rule, f"{len(rows)} snapshots"]


def _snapshot_row(snap: dict[str, Any], reasons: list[str] | None) -> list[str]:
    time = _text(str(snap.get("time", ""))[:19].replace("T", " "))
    tags, paths = _words(snap.get("tags")), _words(snap.get("paths"))
    short = _text(snap.get("short_id") or str(snap.get("id", ""))[:8])
    row = [short, time, _text(snap.get("hostname", "")), tags]
    return [*row, ", ".join(reasons or []), paths] if reasons is not None else [*row, paths]


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _key(snapshot: dict[str, Any]) -> tuple[str, str]:
    return str(snapshot.get("time", "")), str(snapshot.get("tree", ""))


def forget_groups(groups: list[Any]) -> str:
    """`restic forget --json`'s groups as restic's text: per group, the snapshots kept (with
    the reasons) and removed."""
    out: list[str] = []
    for group in groups:
        if not isinstance(group, dict):
            continue
        if len(groups) > 1:
            key = ", ".join(f"{k} [{_words(v).replace(',', ', ')}]"
                            for k in ("host", "tags", "paths") if (v := group.get(k)))
            out += [f"snapshots for ({key}):", ""]
        keep = [s for s in _list(group.get("keep")) if isinstance(s, dict)]
        remove = [s for s in _list(group.get("remove")) if isinstance(s, dict)]
        reasons: dict[tuple[str, str], list[str]] = {}  # 0.14's reasons carry no snapshot id
        for r in _list(group.get("reasons")):
            if isinstance(r, dict) and isinstance(r.get("snapshot"), dict):
                reasons[_key(r["snapshot"])] = [_text(m) for m in _list(r.get("matches"))]
        if keep:
            out.append(f"keep {len(keep)} snapshots:")
            out += _table([_snapshot_row(s, reasons.get(_key(s), [])) for s in keep],
                          ["ID", "Time", "Host", "Tags", "Reasons", "Paths"])
            out.append("")
        if remove:
            out.append(f"remove {len(remove)} snapshots:")
            out += _table([_snapshot_row(s, None) for s in remove],
                          ["ID", "Time", "Host", "Tags", "Paths"])
            out.append("")
    return "\n".join(out) + "\n" if out else ""


def _odd_names(stats: dict[str, Any]) -> bool:
    """Whether a file name of an rclone stats block (`transferring`, `checking`) holds a
    control character."""
    for key in ("transferring", "checking"):
        for item in _list(stats.get(key)):
            name = item.get("name") if isinstance(item, dict) else item
            if printable(str(name)) != str(name):
                return True
    return False


_RCLONE_LEVELS = {"warning": "NOTICE", "notice": "NOTICE", "info": "INFO  ", "error": "ERROR ",
                  "debug": "DEBUG ", "critical": "CRITICAL", "emergency": "EMERGENCY"}


def rclone_line(doc: dict[str, Any]) -> str:
    """One rclone `--use-json-log` line as rclone's text log line
    (`2026/12/06 14:48:24 INFO  : a: Copied (new)`)."""
    stamp = _text(str(doc.get("time", ""))[:19].replace("-", "/", 2).replace("T", " "))
    level = _text(doc.get("level", ""))
    label = _RCLONE_LEVELS.get(level, level.upper())
    obj = doc.get("object")
    msg = str(doc.get("msg", "")).rstrip("\n")
    stats = doc.get("stats")
    # rclone's stats block keeps its lines, unless a name in it (shortened there, maybe) holds
    # a control character: then it is one line
    msg = printable_lines(msg) if isinstance(stats, dict) and not _odd_names(stats) \
        else printable(msg)
    text = f"{_text(obj)}: {msg}" if obj else msg
    return f"{stamp} {label}: {text}\n"
