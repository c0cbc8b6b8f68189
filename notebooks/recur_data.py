"""Reading a Recur data directory from Python, with polars.

Recur's data directory is the source of truth: events are Parquet files that the commit log
names (`_log/`), and each `recur run` writes a snapshot of Parquet tables under
`snapshots/<name>/`. These helpers read exactly what Recur reads:

- `events(data_dir, merchant)`: the live event files, replayed from the log's checkpoint and
  the commits after it (never a directory glob, which could see half-written or replaced
  files), deduplicated as stored;
- `snapshot(data_dir, table, merchant)`: a table of the current snapshot (`profiles`,
  `retention`, `lifecycle`, `repeat`, `similar_items`, ...), one merchant's rows;
- `recur(...)`: the `recur` command line, for what Recur computes on demand (model checks,
  campaign reports), as parsed JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import polars as pl


def data_dir() -> Path:
    """`RECUR_DATA_DIR`, or `.recur-demo` (what `recur demo` writes) from the repository root."""
    configured = os.environ.get("RECUR_DATA_DIR")
    if configured:
        return Path(configured)
    here = Path.cwd()
    for candidate in [here, *here.parents]:
        if (candidate / ".recur-demo").exists():
            return candidate / ".recur-demo"
    return Path(".recur-demo")


def live_event_files(root: Path) -> list[Path]:
    """The event files the commit log says are live now."""
    log = root / "_log"
    pointer = log / "CHECKPOINT"
    live: dict[str, None] = {}
    after = 0
    if pointer.exists():
        # CHECKPOINT holds the sequence number of the newest checkpoint.
        seq = int(pointer.read_text().strip())
        checkpoint = json.loads((log / f"{seq:020d}.checkpoint.json").read_text())
        after = checkpoint["seq"]
        for entry in checkpoint["files"]:
            live[entry["path"]] = None
    commits = sorted(
        (int(p.name.split(".")[0]), p)
        for p in log.glob("*.json")
        if not p.name.endswith(".checkpoint.json")
    )
    for seq, path in commits:
        if seq <= after:
            continue
        record = json.loads(path.read_text())
        for entry in record.get("files", []):
            live[entry["path"]] = None
        for removed in record.get("removed", []):
            live.pop(removed, None)
    return [root / p for p in live if p.endswith(".parquet")]


def events(root: Path, merchant: str | None = None) -> pl.LazyFrame:
    """Every stored event (of one merchant), lazily."""
    files = live_event_files(root)
    if merchant is not None:
        files = [f for f in files if f"merchant={merchant}" in f.as_posix()]
    if not files:
        raise FileNotFoundError(f"no stored events in {root}; run `recur ingest` (or `recur demo`)")
    return pl.scan_parquet(files)


def current_snapshot(root: Path) -> Path:
    current = root / "snapshots" / "CURRENT"
    if not current.exists():
        raise FileNotFoundError(f"no snapshot in {root}; run `recur run --data-dir {root}`")
    return root / "snapshots" / current.read_text().strip()


def snapshot(root: Path, table: str, merchant: str | None = None) -> pl.DataFrame:
    """A table of the current snapshot (one merchant's rows)."""
    frame = pl.scan_parquet(current_snapshot(root) / f"{table}.parquet")
    if merchant is not None:
        frame = frame.filter(pl.col("merchant_id") == merchant)
    return frame.collect()


def manifest(root: Path) -> dict:
    return json.loads((current_snapshot(root) / "manifest.json").read_text())


def recur_binary() -> str:
    """`RECUR_BIN`, else `recur` on PATH, else the repository's release or debug build."""
    configured = os.environ.get("RECUR_BIN")
    if configured:
        return configured
    found = shutil.which("recur")
    if found:
        return found
    repo = Path(__file__).resolve().parent.parent
    for build in ("release", "debug"):
        candidate = repo / "target" / build / "recur"
        if candidate.exists():
            return str(candidate)
    raise FileNotFoundError("no recur binary: set RECUR_BIN or build it (cargo build --release)")


def recur(*args: str) -> object:
    """Runs `recur ARGS` and parses its JSON output (one document, or JSON lines as a list)."""
    done = subprocess.run([recur_binary(), *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"recur {' '.join(args)} failed: {done.stderr.strip()}")
    text = done.stdout.strip()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return [json.loads(line) for line in text.splitlines() if line.strip()]
