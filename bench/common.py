"""Shared by the benchmark scripts: free ports, a private redis-server, waiting for HTTP."""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_debian_package(package: str, command: str) -> None:
    if shutil.which(command) is None:
        print(f"installing {package} (Debian package)...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, stdout=subprocess.DEVNULL)


@contextmanager
def redis_server():
    """A throw-away redis-server on a free loopback port; yields its URL."""
    ensure_debian_package("redis-server", "redis-server")
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        process = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", folder], stdout=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(timeout=10)


def wait_for_http(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=5)
            return
        except requests.RequestException:  # not listening yet, or workers still booting
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


def reuse_or_create(path: Path, members: int) -> bool:
    """True if ``path`` already holds a benchmark database of ``members`` (brought up to the current
    schema); else an empty migrated one is made."""
    import sqlite3

    from storage.db import Database
    from storage.migrate import upgrade

    db = Database(f"sqlite:///{path}")
    if path.exists():
        with sqlite3.connect(path) as conn:
            reusable = conn.execute("SELECT count(*) FROM members").fetchone()[0] == members
        if reusable:
            upgrade(db)  # a database built by an older checkout gets the newer migrations
            db.dispose()
            print(f"using {path} ({members:,} members)", flush=True)
            return True
        db.dispose()
        path.unlink()
        db = Database(f"sqlite:///{path}")
    upgrade(db)
    db.dispose()
    return False
