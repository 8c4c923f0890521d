"""flock locks are not kept by a child forked while another thread holds them."""

from __future__ import annotations

import fcntl
import os
import threading

from minicontainer import filelock


def lock_is_free(path: str) -> bool:
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_child_forked_under_lock_does_not_keep_it(tmp_path):
    path = str(tmp_path / "containers.lock")
    locked = threading.Event()
    forked = threading.Event()

    def hold() -> None:
        with filelock.flocked(path):
            locked.set()
            forked.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    assert locked.wait(10)
    read_end, write_end = os.pipe()
    started_r, started_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(write_end)
        os.write(started_w, b"1")  # the fork handlers have run by now
        os.read(read_end, 1)  # stays alive until the parent has checked
        os._exit(0)
    os.close(read_end)
    os.close(started_w)
    try:
        assert os.read(started_r, 1) == b"1"
        forked.set()
        holder.join(10)
        assert not holder.is_alive()
        assert lock_is_free(path)
    finally:
        os.close(started_r)
        os.close(write_end)
        os.waitpid(child, 0)


def test_lock_excludes_another_description(tmp_path):
    path = str(tmp_path / "index.lock")
    with filelock.flocked(path):
        assert not lock_is_free(path)
    assert lock_is_free(path)


def test_try_flocked_reports_a_held_lock(tmp_path):
    path = str(tmp_path / "gc.lock")
    with filelock.flocked(path, fcntl.LOCK_SH):
        with filelock.try_flocked(path) as taken:
            assert taken is False
    with filelock.try_flocked(path) as taken:
        assert taken is True
