"""Per-run segment files beside a SQLite store: where a leased run's lazy appends go.

A lazy append to SQLite commits a transaction, which writes at least one whole page (1 KiB
and its frame header) to the WAL and costs ~20 µs of SQLite's own CPU. Appending the event's
line to a file costs one ``write()`` of ~120 bytes, and survives ``kill -9`` as well (the
kernel holds the bytes once the call returns); so lazy appends go to the run's segment, and
the SQLite file stays the index and the home of everything else.

The protocol, per run (one file, ``<store>-seg/<sha256 of the run id>.seg``):

* Only the store object that created a segment appends to it, under its lease, holding an
  exclusive ``flock`` on it for the write. It created the segment right after one of its own
  appends committed in SQLite, fenced by that same lease.
* Whoever else touches the run through SQLite (any append that is not a leased lazy one, a
  lease acquired, claimed or released) first takes the segment's lock, moves its lines into
  SQLite inside its own transaction, and after the commit puts a fresh segment (or none) in
  its place: the old file is unlinked (renamed over), so its writer, checking the link count
  under the lock before each write, finds it has been superseded and goes through SQLite,
  where the lease fences it off or the seq conflicts. An event is never in both places for
  long: lines at or below SQLite's last seq are skipped when merging or reading.
* Readers take a shared lock and read SQLite then the segment's lines after SQLite's last seq.
* A sync append (a write's intent, completion) merges the segment into a ``synchronous=FULL``
  commit, so everything before it is on stable storage, as the output-commit rule needs. After
  power loss the unsynced tail of a segment may be torn: lines are read up to the first whose
  checksum fails (a suffix of lazy events, which the store promises only against ``kill -9``).

Each line is ``seq crc kind body\\n``; bodies are JSON text, which never holds a raw newline.
"""

from __future__ import annotations

import hashlib
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

try:
    import fcntl
except ImportError:  # pragma: no cover - no flock (Windows): the store appends to SQLite only
    fcntl = None  # type: ignore[assignment]

__all__ = ["SEGMENTS_SUPPORTED", "Segment", "Segments", "parse"]

SEGMENTS_SUPPORTED = fcntl is not None

#: One journaled line: (seq, kind, body, crc).
Row = tuple[int, str, str, int]


@dataclass
class Segment:
    """An open segment this store object appends to, under the lease it was created with."""

    fd: int
    owner: str
    epoch: int
    #: Bytes at the start of the file already taken into SQLite, and read up to so far.
    merged: int = 0
    read_to: int = 0


def parse(data: bytes) -> list[Row]:
    """The rows of a segment's bytes, up to the first torn or damaged line."""
    return parse_counted(data)[0]


def parse_counted(data: bytes) -> tuple[list[Row], int]:
    """:func:`parse`, and how many bytes of ``data`` the rows it returns take."""
    rows: list[Row] = []
    start = 0
    while True:
        end = data.find(b"\n", start)
        if end < 0:
            return rows, start
        parts = data[start:end].split(b" ", 3)
        try:
            seq, crc, kind, raw = int(parts[0]), int(parts[1]), parts[2], parts[3]
        except (ValueError, IndexError):
            return rows, start
        if zlib.crc32(raw) != crc:
            return rows, start
        rows.append((seq, kind.decode(), raw.decode(), crc))
        start = end + 1


class Segments:
    """The segment files of one SQLite store, and the ones this store object writes."""

    def __init__(self, db_path: str) -> None:
        self.folder = f"{db_path}-seg"
        self.mine: dict[str, Segment] = {}

    def path(self, run_id: str) -> str:
        return os.path.join(self.folder, hashlib.sha256(run_id.encode()).hexdigest()[:40] + ".seg")

    # -- the hot path -------------------------------------------------------------------------

    def append(self, run_id: str, owner: str, epoch: int,
               row: tuple[str, int, str, str, int]) -> bool:
        """Write one line to this object's segment of ``run_id`` under lease (owner, epoch);
        False (nothing written) when there is none or it was superseded."""
        segment = self.mine.get(run_id)
        if segment is None or segment.owner != owner or segment.epoch != epoch:
            return False
        fd = segment.fd
        assert fcntl is not None
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            superseded = os.fstat(fd).st_nlink == 0
            if not superseded:
                _, seq, kind, body, crc = row
                line = b"%d %d %s %s\n" % (seq, crc, kind.encode(), body.encode())
                if os.write(fd, line) != len(line):  # pragma: no cover - a full disk
                    raise OSError(f"short write to {self.path(run_id)}")
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
        if superseded:
            self.forget(run_id)
        return not superseded

    def pending(self, run_id: str, fd: int) -> tuple[list[Row], bool]:
        """The rows in ``fd`` (a segment locked by :meth:`exclusive`) not yet in SQLite, and
        whether they are this object's own (all after SQLite's last seq, no check needed).
        Its own segment is read from where the last merge ended, not from its start."""
        mine = self.mine.get(run_id)
        if mine is None or mine.fd != fd:
            return parse(read_all(fd)), False
        rows, used = parse_counted(read_all(fd, mine.merged))
        mine.read_to = mine.merged + used
        return rows, True

    def forget(self, run_id: str, *, keep: int | None = None) -> None:
        """Stop writing ``run_id``'s segment; its descriptor is closed unless it is ``keep``
        (one a caller still holds and closes itself)."""
        segment = self.mine.pop(run_id, None)
        if segment is not None and segment.fd != keep:
            os.close(segment.fd)

    def close(self) -> None:
        for run_id in list(self.mine):
            self.forget(run_id)

    # -- under the run's lock ----------------------------------------------------------------

    @contextmanager
    def exclusive(self, run_id: str, *, wait: bool = True) -> Iterator[int | None]:
        """The run's current segment file (created empty if none), locked exclusively; None
        when ``wait`` is False and another holds it. Take it before SQLite's write lock."""
        assert fcntl is not None
        mine = self.mine.get(run_id)
        if mine is not None and wait:
            # This object's own segment: its descriptor, no new open (a write step's intent
            # comes here after the lazy result before it).
            fcntl.flock(mine.fd, fcntl.LOCK_EX)
            if os.fstat(mine.fd).st_nlink > 0:
                try:
                    yield mine.fd
                finally:
                    if self.mine.get(run_id) is mine:
                        fcntl.flock(mine.fd, fcntl.LOCK_UN)
                    else:  # replaced meanwhile: the descriptor was left to us to close
                        os.close(mine.fd)
                return
            fcntl.flock(mine.fd, fcntl.LOCK_UN)
            self.forget(run_id)
        os.makedirs(self.folder, exist_ok=True)
        path = self.path(run_id)
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                yield None
                return
            if os.fstat(fd).st_nlink > 0:
                break
            os.close(fd)  # superseded between open and lock: take the one now in its place
        try:
            yield fd
        finally:
            os.close(fd)

    @contextmanager
    def shared(self, run_id: str) -> Iterator[list[Row]]:
        """The rows of the run's segment (none if it has none), held still while in use."""
        if fcntl is None:
            yield []
            return
        path = self.path(run_id)
        while True:
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                yield []
                return
            fcntl.flock(fd, fcntl.LOCK_SH)
            if os.fstat(fd).st_nlink > 0:
                break
            os.close(fd)
        try:
            yield parse(read_all(fd))
        finally:
            os.close(fd)

    def exists(self, run_id: str) -> bool:
        return os.path.exists(self.path(run_id))

    def replace(self, run_id: str, old_fd: int, owner: str | None, epoch: int) -> None:
        """After a commit that took in ``old_fd``'s lines: put a fresh segment in its place,
        this object's to write under lease (owner, epoch), or none when ``owner`` is None.
        The caller still holds the old one's lock, so nobody sees the run without either."""
        assert fcntl is not None
        mine = self.mine.get(run_id)
        if mine is not None and mine.fd == old_fd and (mine.owner, mine.epoch) == (owner, epoch):
            # Its own writer under the same lease: kept, nobody is superseded; what was merged
            # is skipped from now on (and cut off once it is large: truncating at every merge
            # cost a write step more CPU than the merge saved).
            mine.merged = mine.read_to
            if mine.merged > 1 << 20:
                os.ftruncate(old_fd, 0)
                mine.merged = mine.read_to = 0
            return
        self.forget(run_id, keep=old_fd)
        path = self.path(run_id)
        if len(self.mine) >= 256:  # bounded open files: a forgotten run's next append merges
            self.close()
        if owner is None:
            os.unlink(path)
            return
        fresh = f"{path}.{os.getpid()}.{id(self)}"
        fd = os.open(fresh, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        try:
            os.rename(fresh, path)
        except BaseException:
            os.close(fd)
            os.unlink(fresh)
            raise
        self.mine[run_id] = Segment(fd, owner, epoch)

    def existing(self) -> set[str]:
        """File names of the segments in the folder now (for listing many runs at once)."""
        try:
            return set(os.listdir(self.folder))
        except FileNotFoundError:
            return set()


def read_all(fd: int, offset: int = 0) -> bytes:
    """Every byte of the file behind ``fd`` from ``offset`` on."""
    chunks = []
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)
