"""A real, throwaway PostgreSQL server for tests.

:class:`TemporaryPostgres` runs ``initdb`` into a temporary directory, starts the server on a
free loopback port with trust authentication, and on exit stops it (``-m immediate``: nothing in
it is worth a clean shutdown) and deletes the directory. It needs the server binaries
(``apt-get install postgresql``); :func:`postgres_available` says whether they are there.

PostgreSQL refuses to run as root, so when this process is root the server commands run as the
``postgres`` system user, who is given the temporary directory.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

__all__ = ["TemporaryPostgres", "find_postgres_bin", "postgres_available"]

#: Small and quick to start, but ``fsync`` stays on: tests pin durability semantics. Room for
#: several workers at once: each holds a few connections (journal, I/O threads, LISTEN).
_SERVER_CONFIG = {
    "listen_addresses": "'127.0.0.1'",
    "shared_buffers": "16MB",
    "max_connections": "100",
    "fsync": "on",
    "synchronous_commit": "on",
    "max_wal_size": "256MB",
    "logging_collector": "off",
    "log_min_messages": "warning",
}


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", path))


def find_postgres_bin() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: from PATH, else the newest
    ``/usr/lib/postgresql/*/bin``; ``None`` when PostgreSQL is not installed."""
    on_path = shutil.which("initdb")
    if on_path is not None:
        # Debian links /usr/local/bin/initdb into the versioned directory; pg_ctl looks for
        # `postgres` beside itself, so use the real directory.
        real = Path(os.path.realpath(on_path)).parent
        if (real / "pg_ctl").exists():
            return real
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key)
    for directory in reversed(candidates):
        if (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    return None


def postgres_available() -> bool:
    """Whether :class:`TemporaryPostgres` can start a server on this machine."""
    if find_postgres_bin() is None:
        return False
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return False
    return True


def _free_port() -> int:
    # The port could be taken between here and the server's bind; start() retries then.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class TemporaryPostgres:
    """A PostgreSQL server that lives as long as a ``with`` block.

    >>> with TemporaryPostgres() as pg:  # doctest: +SKIP
    ...     store = PostgresStore(pg.dsn)

    ``dsn`` connects as the ``postgres`` superuser to the ``postgres`` database over TCP on
    127.0.0.1; no password is needed (trust authentication, loopback only).
    """

    def __init__(self, *, start_timeout_s: float = 60.0) -> None:
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self.dsn = ""
        self._dir: Path | None = None
        self._bin: Path | None = None
        self._user: str | None = None

    @property
    def data_dir(self) -> Path:
        """The server's data directory (valid while the server runs)."""
        if self._dir is None:
            raise RuntimeError("the server is not running; use TemporaryPostgres in a with block")
        return self._dir / "data"

    def __enter__(self) -> TemporaryPostgres:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Create the cluster and start the server; :attr:`dsn` is usable afterwards."""
        self._bin = find_postgres_bin()
        if self._bin is None:
            raise RuntimeError(
                "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or under "
                "/usr/lib/postgresql/*/bin; install them with `apt-get install postgresql`"
            )
        self._user = None
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root, and PostgreSQL refuses root; create a `postgres` system "
                    "user (apt-get install postgresql does) or run the tests as another user"
                ) from None
            self._user = "postgres"
        self._dir = Path(tempfile.mkdtemp(prefix="tether-pg-"))
        try:
            if self._user is not None:
                shutil.chown(self._dir, user=self._user, group=self._user)
            self._run("initdb", "-D", str(self.data_dir), "-U", "postgres", "--auth=trust",
                      "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions")
            for _attempt in range(3):
                self.port = _free_port()
                if self._start_server():
                    break
            else:
                raise RuntimeError(f"PostgreSQL did not start; its log says:\n{self._log_tail()}")
        except BaseException:
            self.stop()
            raise
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _start_server(self) -> bool:
        assert self._dir is not None
        settings = {**_SERVER_CONFIG, "port": str(self.port),
                    "unix_socket_directories": f"'{self._dir}'"}
        conf = "".join(f"{name} = {value}\n" for name, value in settings.items())
        (self.data_dir / "postgresql.auto.conf").write_text(conf)
        result = self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self._dir / "log"),
                           "-w", "-t", str(int(self.start_timeout_s)), "start", check=False)
        return result.returncode == 0

    def stop(self) -> None:
        """Stop the server at once and delete its directory. Safe to call twice."""
        if self._dir is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop",
                      check=False)
        shutil.rmtree(self._dir, ignore_errors=True)
        self._dir = None
        self.dsn = ""

    def _run(
        self, program: str, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        assert self._bin is not None and self._dir is not None
        result = subprocess.run(
            [str(self._bin / program), *args],
            cwd=self._dir,  # the postgres user may not be allowed into our working directory
            user=self._user,
            group=self._user,
            extra_groups=[] if self._user is not None else None,
            env={**os.environ, "LC_ALL": "C"},
            capture_output=True,
            text=True,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} failed with exit code {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    def _log_tail(self) -> str:
        assert self._dir is not None
        try:
            return "".join((self._dir / "log").read_text().splitlines(True)[-20:])
        except OSError:
            return "(no log written)"
