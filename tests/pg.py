"""A throwaway PostgreSQL server for the tests: Debian's ``postgresql`` binaries, ``initdb`` into
a temporary folder, ``pg_ctl`` on 127.0.0.1 only (a free port, the socket in that folder).

PostgreSQL refuses to run as root, and CI runs as root: the server then runs as the system user
:data:`PG_USER` (created with ``useradd -r`` when missing) through ``runuser``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

PG_USER = "ecgml-pg"
PG_ROOT = Path("/usr/lib/postgresql")
SUPERUSER = "postgres"
MISSING = (
    "PostgreSQL server binaries (initdb, pg_ctl) are not installed: "
    "apt-get install postgresql (or set ECGML_PG_BIN to their folder)"
)


def _version(folder: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", folder.parent.name)) or (0,)


def find_bin_dir() -> Path | None:
    """``$ECGML_PG_BIN``, else the newest ``/usr/lib/postgresql/<ver>/bin``, else ``$PATH``."""
    candidates = [Path(os.environ["ECGML_PG_BIN"])] if os.environ.get("ECGML_PG_BIN") else []
    candidates += sorted(PG_ROOT.glob("*/bin"), key=_version, reverse=True)
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "pg_ctl").is_file():
            return folder
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unprivileged_prefix() -> list[str]:
    """``runuser -u ecgml-pg --`` when running as root (the user is created if missing)."""
    if os.geteuid() != 0:
        return []
    if subprocess.run(["id", "-u", PG_USER], capture_output=True).returncode != 0:
        subprocess.run(
            ["useradd", "-r", "-M", "-s", "/usr/sbin/nologin", PG_USER],
            check=True,
            capture_output=True,
        )
    return ["runuser", "-u", PG_USER, "--"]


@dataclass
class PostgresServer:
    bin_dir: Path
    folder: Path
    port: int
    prefix: list[str]

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str) -> None:
        cmd = [*self.prefix, str(self.bin_dir / tool), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stdout}{done.stderr}{tail}")

    def start(self) -> None:
        self._run("initdb", "-D", str(self.data_dir), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off"
        log = str(self.folder / "server.log")
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", log, "-o", options, "-w", "start")

    def create_database(self, name: str | None = None) -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        name = name or f"db_{uuid.uuid4().hex[:12]}"
        host = ("-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER)
        self._run("createdb", *host, name)
        return self.url(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def start_server(bin_dir: Path) -> PostgresServer:
    """initdb + pg_ctl start in a new folder outside pytest's (root-only) temp tree."""
    prefix = _unprivileged_prefix()
    folder = Path(tempfile.mkdtemp(prefix="ecgml-pg-"))
    if prefix:
        shutil.chown(folder, user=PG_USER, group=None)
    server = PostgresServer(bin_dir, folder, free_port(), prefix)
    try:
        server.start()
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return server
