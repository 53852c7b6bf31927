"""The web editor's sessions: what each browser tab has loaded, bounded in time and in number.

A session holds up to three photos (the target, the reference, the last result). Each photo is kept as

- its full-size file on disk, in the session's own folder (the uploaded file, hard-linked out of Gradio's
  upload cache, or the result the server wrote): read back only while a request runs;
- a preview at the working size (:data:`WORKING_SIDE` pixels a side at most) in memory, for the overlay
  and the painting canvases;
- its label map as ``uint8`` class indices at the photo's own size in memory.

Every request writes its outputs (overlays, canvases, the result) into a folder of its own inside the
session's folder, so two requests never share a path, whatever their content.

A session ends when it has not been used for ``ttl`` seconds, or, when a new session would exceed
``capacity``, the least recently used one ends first. Ending a session drops its photos from memory and
deletes its folder (originals, results, views) and the upload-cache files its photos came from; the
memory is handed back to the system (a garbage collection, then ``malloc_trim`` where glibc offers it).
Expiry is checked on every access and, once a session exists, by a background thread.

This module needs no Gradio: :class:`SessionStore` is used by :mod:`facestyle.app.server`.
"""

from __future__ import annotations

import collections
import ctypes
import ctypes.util
import gc
import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError

__all__ = ["WORKING_SIDE", "Photo", "Session", "SessionStore", "release_memory", "trim_memory"]

logger = logging.getLogger(__name__)

WORKING_SIDE = 768  # previews (overlay, painting canvases) are at most this large
ROLES = ("target", "reference", "result")


UNDO_STEPS = 8  # edits a session can undo


@dataclass(eq=False)
class Photo:
    """One loaded photo of a session (see the module's docstring)."""

    id: str
    path: Path  # the full-size photo on disk, inside its session's folder
    size: tuple[int, int]  # its (H, W)
    preview: np.ndarray  # (h, w, 3) uint8, at most WORKING_SIDE a side
    labels: np.ndarray | None  # (H, W) uint8 class indices, or None when it has no label map yet
    output: Path | None = None  # the request folder that showed it (kept while the photo is current)
    before: Path | None = None  # a result's: the full-size photo it was made from (the before/after view)
    uploads: list[tuple[Path, tuple[int, int]]] = field(default_factory=list)  # upload-cache files: (path, inode)
    face: int | None = None  # the face edited (aligned, edited, pasted back into the photo); None: the whole photo
    faces: list[str] = field(default_factory=list)  # the faces found in the photo, largest first (for the page)

    def handle(self, session: Session, role: str) -> dict:
        """What a page keeps (a gr.State value): names the photo, holds none of it."""
        return {"session": session.id, "role": role, "photo": self.id}

    def discard(self) -> None:
        """Delete its files: the full-size copy and the upload-cache files it came from (when they are
        still the same files: an identical upload since then is another user's)."""
        self.path.unlink(missing_ok=True)
        for upload, inode in self.uploads:
            try:
                st = upload.stat()
                if (st.st_dev, st.st_ino) == inode:
                    upload.unlink()
                    upload.parent.rmdir()  # Gradio's per-upload folder, when nothing else is in it
            except OSError:
                pass


class Session:
    """One browser tab's photos and files. Use it through :class:`SessionStore`."""

    def __init__(self, session_id: str, folder: Path, keep_outputs: int, now: float,
                 upload_root: Path | None = None) -> None:
        self.id = session_id
        self.upload_root = upload_root
        self.folder = folder  # a name of our own: the id comes from the client and never names a path
        self.photos: dict[str, Photo] = {}
        self.outputs: collections.deque[Path] = collections.deque()
        self.keep_outputs = keep_outputs
        self.history: list[tuple[str, str | None]] = []  # undo: (role, the role key keeping its old photo)
        self.last_used = now
        self.closed = False
        self.lock = threading.Lock()

    def photo(self, role: str, photo_id: str | None = None) -> Photo | None:
        """The photo in ``role`` (None when there is none, or when it is no longer the one named)."""
        photo = self.photos.get(role)
        if photo is None or (photo_id is not None and photo.id != photo_id):
            return None
        return photo

    def new_photo(self, image_path: Path, preview: np.ndarray, size: tuple[int, int], labels: np.ndarray | None,
                  link: bool = True, uploads: tuple[Path, ...] = ()) -> Photo:
        """A photo of this session whose full-size file is ``image_path``: hard-linked (copied where the file
        system refuses) into the session's folder, or, with ``link=False``, already inside it. ``uploads``: the
        files it was made from, deleted with it when they lie in the store's upload folder."""
        photo_id = secrets.token_hex(8)
        if link:
            path = self._folder("photos") / f"{photo_id}{image_path.suffix.lower() or '.png'}"
            try:
                os.link(image_path, path)
            except OSError:
                shutil.copyfile(image_path, path)
        else:
            path = image_path
        recorded = []
        for upload in uploads if self.upload_root is not None else ():
            if not _inside(upload, self.upload_root):
                continue
            try:
                st = upload.stat()
                recorded.append((upload, (st.st_dev, st.st_ino)))
            except OSError:
                pass
        return Photo(photo_id, path, size, preview, labels, uploads=recorded)

    def put(self, role: str, photo: Photo | None) -> None:
        """Make ``photo`` the session's ``role`` (None: clear it); a photo no role holds any more is deleted."""
        with self.lock:
            old = self.photos.pop(role, None)
            if photo is not None:
                self.photos[role] = photo
            if old is not None and all(p is not old for p in self.photos.values()):
                old.discard()

    def remember(self, role: str) -> None:
        """Keep the photo now in ``role`` (or its absence) so that :meth:`undo` can bring it back; at most
        UNDO_STEPS are kept."""
        with self.lock:
            photo = self.photos.get(role)
            key = None
            if photo is not None:
                key = f"undo:{secrets.token_hex(4)}"
                self.photos[key] = photo
            self.history.append((role, key))
            dropped = self.history[:-UNDO_STEPS]
            del self.history[:-UNDO_STEPS]
        for _, old in dropped:
            if old is not None:
                self.put(old, None)

    def undo(self) -> str | None:
        """Bring back the photo of the last :meth:`remember` into its role; the role, or None when there
        is nothing to undo."""
        with self.lock:
            if not self.history:
                return None
            role, key = self.history.pop()
            photo = self.photos.pop(key, None) if key is not None else None
        self.put(role, photo)
        return role

    def new_output(self) -> Path:
        """A new folder for one request's files. Only the last ``keep_outputs`` are kept (and those that show
        a photo the session still holds): the page has long fetched the older ones."""
        folder = self._folder("out") / secrets.token_hex(8)
        folder.mkdir(mode=0o700)
        with self.lock:
            self.outputs.append(folder)
            current = {p.output for p in self.photos.values()}
            stale = [f for f in list(self.outputs)[:-self.keep_outputs] if f not in current]
            for f in stale:
                self.outputs.remove(f)
        for f in stale:
            shutil.rmtree(f, ignore_errors=True)
        return folder

    def _folder(self, name: str) -> Path:
        if self.closed:
            raise InputError(_ended("this editing session"))
        path = self.folder / name
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    def close(self) -> None:
        with self.lock:
            self.closed = True
            photos, self.photos = list(self.photos.values()), {}
            self.outputs.clear()
        for photo in {id(p): p for p in photos}.values():
            photo.discard()
        shutil.rmtree(self.folder, ignore_errors=True)


def _inside(path: Path, folder: Path) -> bool:
    try:
        return Path(os.path.realpath(path)).is_relative_to(os.path.realpath(folder))
    except OSError:
        return False


def _ended(what: str) -> str:
    return (f"{what} has ended (unused for too long, or the server made room for newer sessions): "
            "upload the photos again")


class SessionStore:
    """The sessions of one server: at most ``capacity``, each ending after ``ttl`` idle seconds.

    ``root``: the folder under which a folder of this store holds one folder per session (default: the
    system's temporary folder; removed by :meth:`close` or when the store is garbage-collected).
    ``upload_root``: the server's upload cache; uploads inside it that a photo was made from are deleted
    with the photo (None: uploads are never deleted). ``keep_outputs``: request folders kept per session.
    ``clock``: seconds, monotonic (tests pass a fake one)."""

    def __init__(self, root: str | os.PathLike | None = None, ttl: float = 1800.0, capacity: int = 50,
                 upload_root: str | os.PathLike | None = None, keep_outputs: int = 16,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not ttl > 0:
            raise InputError(f"the session time to live must be positive, got {ttl}")
        if capacity < 1:
            raise InputError(f"the session capacity must be at least 1, got {capacity}")
        self.ttl = float(ttl)
        self.capacity = int(capacity)
        self.keep_outputs = max(1, int(keep_outputs))
        self.clock = clock
        self.upload_root = Path(upload_root) if upload_root is not None else None
        self._root_arg = Path(root) if root is not None else None
        self._root: Path | None = None
        self._sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()  # least recent first
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._finalizer: weakref.finalize | None = None

    # ------------------------------------------------------------------------------------------ access

    @property
    def root(self) -> Path:
        """The folder of the sessions' folders (made on first use)."""
        with self._lock:
            if self._root is None:
                if self._root_arg is not None:
                    self._root_arg.mkdir(mode=0o700, parents=True, exist_ok=True)
                self._root = Path(tempfile.mkdtemp(prefix="facestyle-sessions-", dir=self._root_arg))
                self._finalizer = weakref.finalize(self, shutil.rmtree, str(self._root), True)
            return self._root

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: str) -> bool:
        return session_id in self._sessions

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._sessions)

    def session(self, session_id: str | None = None, create: bool = False) -> Session:
        """The session ``session_id`` (used now: its idle time starts again). With ``create``, a missing one
        is opened (a fresh id when None), ending the least recently used one when the store is full."""
        self.expire()
        root = self.root if create else None
        ended: list[Session] = []
        with self._lock:
            session = self._sessions.get(session_id) if session_id is not None else None
            if session is None:
                if not create:
                    raise InputError(_ended("your editing session"))
                session_id = session_id or secrets.token_hex(16)
                session = Session(session_id, root / secrets.token_hex(8), self.keep_outputs, self.clock(),
                                  self.upload_root)
                self._sessions[session_id] = session
                while len(self._sessions) > self.capacity:
                    ended.append(self._sessions.popitem(last=False)[1])
            session.last_used = self.clock()
            self._sessions.move_to_end(session_id)
        self._end(ended, "to make room")
        self._start_sweeper()
        return session

    def lookup(self, handle: dict | None, role: str) -> tuple[Session, Photo] | None:
        """The session and photo a page's handle names; None when the page holds none; an InputError when it
        is gone (its session ended, or another upload replaced it)."""
        if not handle or not handle.get("photo"):
            return None
        session = self.session(handle.get("session"))
        photo = session.photo(handle.get("role", role), handle["photo"])
        if photo is None:
            if role == "result":
                raise InputError("that result is no longer on the server (a newer one replaced it): edit again")
            raise InputError(f"the {role} photo is no longer on the server (another upload replaced it): "
                             "upload it again")
        return session, photo

    def photo_of(self, handle: dict | None, role: str = "target") -> Photo | None:
        found = self.lookup(handle, role)
        return None if found is None else found[1]

    # ------------------------------------------------------------------------------------------ expiry

    def expire(self) -> int:
        """End the sessions unused for more than ``ttl`` seconds; returns how many ended."""
        now = self.clock()
        with self._lock:
            old = [s for s in self._sessions.values() if now - s.last_used > self.ttl]
            for s in old:
                del self._sessions[s.id]
        self._end(old, "expired")
        return len(old)

    def end(self, session_id: str) -> bool:
        """End one session now (its files deleted); False when there is none."""
        with self._lock:
            session = self._sessions.pop(session_id, None)
        self._end([session] if session else [], "ended")
        return session is not None

    def close(self) -> None:
        """End every session, stop the background thread and remove the root folder."""
        self._stop.set()
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        self._end(sessions, "server closing")
        if self._finalizer is not None:
            self._finalizer()  # removes the root folder

    def _end(self, sessions: list[Session], why: str) -> None:
        if not sessions:
            return
        for s in sessions:
            s.close()
        logger.info("%d editing session(s) ended (%s); %d open", len(sessions), why, len(self._sessions))
        release_memory()

    # ------------------------------------------------------------------------------------- the sweeper

    @property
    def sweep_interval(self) -> float:
        return min(30.0, max(0.5, self.ttl / 4))

    def _start_sweeper(self) -> None:
        if self._sweeper is not None or self._stop.is_set():
            return
        with self._lock:
            if self._sweeper is not None:
                return
            self._sweeper = threading.Thread(target=_sweep, args=(weakref.ref(self), self._stop, self.sweep_interval),
                                             name="facestyle-session-expiry", daemon=True)
        self._sweeper.start()


def _sweep(store_ref: weakref.ref, stop: threading.Event, interval: float) -> None:
    """End expired sessions every ``interval`` seconds, until the store closes or is garbage-collected."""
    while not stop.wait(interval):
        store = store_ref()
        if store is None:
            return
        try:
            store.expire()
        except Exception:  # never let the sweeper die on one bad folder
            logger.exception("ending expired editing sessions failed")
        del store


_LIBC: ctypes.CDLL | None | bool = False


def release_memory() -> None:
    """Collect garbage, then :func:`trim_memory`: what ended sessions held goes back to the system."""
    gc.collect()
    trim_memory()


def trim_memory() -> None:
    """Hand freed heap pages back to the system (glibc's ``malloc_trim``; nothing elsewhere). Large images are
    decoded in blocks that the allocator otherwise keeps, counted in the server's memory, after a request."""
    global _LIBC
    if _LIBC is False:
        try:
            name = ctypes.util.find_library("c")
            libc = ctypes.CDLL(name) if name else None
            _LIBC = libc if libc is not None and hasattr(libc, "malloc_trim") else None
        except OSError:
            _LIBC = None
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
