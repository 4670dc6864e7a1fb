"""Throughput of the output redactor on realistic `restic backup --json -v` output.

Run: .venv/bin/python bench/bench_redactor.py [--mb 100] [--baseline]

Feeds ~100 MB of status/verbose_status lines in 64 KiB chunks through `StreamRedactor` with 0, 1,
10 and 50 registered secrets and prints MB/s: once for output that never contains a secret (the
usual case) and once with a secret in about one line in a thousand. `--baseline` also times the
naive single regex of all forms, for comparison.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import string
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from security.masking import SecretRegistry, encoded_forms

CHUNK = 64 * 1024
WORDS = [
    "home",
    "alice",
    "bob",
    "Documents",
    "photos",
    "2024",
    "src",
    "lib",
    "node_modules",
    "projekt",
    "Überweisung",
    "backup",
    "data",
    "var",
    "log",
    "cache",
    "IMG",
    "README.md",
    "config",
    "music",
    "Videos",
    "München",
    "invoice",
    "tmp",
    "git",
    "objects",
    "pack",
    "Makefile",
    "venv",
    "site",
]


def restic_lines(rnd: random.Random, size: int, secrets: list[str], hit_every: int) -> bytes:
    """About `size` bytes of JSON lines; every `hit_every`-th line carries a secret (0: never)."""
    out: list[bytes] = []
    total = n = 0
    while total < size:
        n += 1
        path = (
            "/"
            + "/".join(
                rnd.choice(WORDS) + (str(rnd.randint(0, 999)) if rnd.random() < 0.5 else "")
                for _ in range(rnd.randint(3, 8))
            )
            + rnd.choice([".jpg", ".txt", ".go", ".py", ".bin", ".JPG", ""])
        )
        if hit_every and secrets and n % hit_every == 0:
            path += "/" + rnd.choice(secrets)
        if rnd.random() < 0.9:
            rec: dict[str, object] = {
                "message_type": "verbose_status",
                "action": rnd.choice(["new", "unchanged", "modified"]),
                "item": path,
                "duration": rnd.random(),
                "data_size": rnd.randint(0, 10**9),
                "data_size_in_repo": rnd.randint(0, 10**9),
                "metadata_size": rnd.randint(0, 9999),
                "metadata_size_in_repo": rnd.randint(0, 9999),
                "total_files": rnd.randint(0, 10**6),
            }
        else:
            rec = {
                "message_type": "status",
                "seconds_elapsed": rnd.randint(0, 9999),
                "percent_done": rnd.random(),
                "total_files": rnd.randint(0, 10**6),
                "files_done": rnd.randint(0, 10**6),
                "total_bytes": rnd.randint(0, 10**12),
                "bytes_done": rnd.randint(0, 10**12),
                "current_files": [path, path + ".tmp"],
            }
        line = json.dumps(rec, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
        out.append(line)
        total += len(line)
    return b"".join(out)


def make_secrets(rnd: random.Random, count: int) -> list[str]:
    """A mix of what a runner reads: passwords, hex tokens, S3 keys, webhook secrets."""
    kinds = [
        lambda: "".join(
            rnd.choice(string.ascii_letters + string.digits + "!@#%/:+-_")
            for _ in range(rnd.randint(16, 32))
        ),
        lambda: "".join(rnd.choice("0123456789abcdef") for _ in range(64)),
        lambda: "".join(rnd.choice(string.ascii_letters + string.digits + "/+") for _ in range(40)),
        lambda: (
            "whsec_"
            + "".join(rnd.choice(string.ascii_letters + string.digits + "+/") for _ in range(32))
        ),
        lambda: "".join(rnd.choice(string.ascii_lowercase) for _ in range(20)),
    ]
    return [kinds[i % len(kinds)]() for i in range(count)]


def run(data: bytes, registry: SecretRegistry) -> tuple[float, int]:
    stream = registry.stream()
    t = time.perf_counter()
    out = 0
    for i in range(0, len(data), CHUNK):
        out += len(stream.feed(data[i : i + CHUNK]))
    out += len(stream.flush())
    return len(data) / (time.perf_counter() - t) / 1e6, out


def baseline(data: bytes, secrets: list[str]) -> float:
    """The naive design: one regex of every form, longest first, `sub` on each 64 KiB chunk."""
    forms = sorted({f for s in secrets for f in encoded_forms(s)}, key=len, reverse=True)
    rx = re.compile(b"|".join(map(re.escape, forms)))
    sample = data[: 8 * 1024 * 1024]
    t = time.perf_counter()
    for i in range(0, len(sample), CHUNK):
        rx.sub(b"***", sample[i : i + CHUNK])
    return len(sample) / (time.perf_counter() - t) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=100, help="megabytes of output per measurement")
    ap.add_argument("--baseline", action="store_true", help="also time the naive regex")
    args = ap.parse_args()
    rnd = random.Random(42)
    size = args.mb * 1024 * 1024
    print(
        f"{'secrets':>7} {'forms':>6} {'no match MB/s':>14} {'1‰ lines hit MB/s':>18}"
        + (f" {'naive re MB/s':>14}" if args.baseline else "")
    )
    for count in (0, 1, 10, 50):
        secrets = make_secrets(rnd, count)
        registry = SecretRegistry()
        for s in secrets:
            registry.register(s)
        forms = len({f for s in secrets for f in encoded_forms(s)})
        block = restic_lines(rnd, 4 * 1024 * 1024, secrets, 0)
        clean = (block * (size // len(block) + 1))[:size]
        hits = restic_lines(rnd, 4 * 1024 * 1024, secrets, 1000)
        dirty = (hits * (size // len(hits) + 1))[:size]
        speed_clean, _ = run(clean, registry)
        speed_dirty, _ = run(dirty, registry)
        row = f"{count:>7} {forms:>6} {speed_clean:>14.0f} {speed_dirty:>18.0f}"
        if args.baseline:
            row += f" {baseline(clean, secrets):>14.0f}" if secrets else f" {'-':>14}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
