"""Pseudo-terminals for ``minictr run -t``.

The container gets the slave side of a new pty as its controlling terminal
and as fds 0, 1 and 2. minictr keeps the master side and copies bytes
between it and the user's terminal, which it puts in raw mode so that keys
such as Ctrl-C reach the container's line discipline instead of minictr.
Window-size changes (SIGWINCH) are copied onto the pty with TIOCSWINSZ.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import signal
import struct
import termios
import tty as stdlib_tty


class Terminal:
    def __init__(self, master: int, slave: int) -> None:
        self.master = master
        self.slave = slave
        self._saved: list | None = None

    @classmethod
    def open(cls) -> Terminal:
        master, slave = os.openpty()
        os.set_inheritable(slave, True)
        terminal = cls(master, slave)
        terminal.copy_window_size()
        return terminal

    def copy_window_size(self) -> None:
        if not os.isatty(0):
            return
        size = fcntl.ioctl(0, termios.TIOCGWINSZ, struct.pack("HHHH", 0, 0, 0, 0))
        fcntl.ioctl(self.master, termios.TIOCSWINSZ, size)

    def close_slave(self) -> None:
        if self.slave >= 0:
            os.close(self.slave)
            self.slave = -1

    def relay(self, pid: int, interactive: bool) -> int:
        """Copy bytes until the container exits; return its exit code."""
        if os.isatty(0):
            self._saved = termios.tcgetattr(0)
            stdlib_tty.setraw(0)
        signal.signal(signal.SIGWINCH, lambda *_: self.copy_window_size())
        inputs = [self.master] + ([0] if interactive else [])
        while True:
            try:
                ready, _, _ = select.select(inputs, [], [])
            except InterruptedError:
                continue
            if 0 in ready:
                data = os.read(0, 65536)
                if data:
                    _write_all(self.master, data)
                else:
                    inputs.remove(0)
            if self.master in ready:
                try:
                    data = os.read(self.master, 65536)
                except OSError as exc:
                    if exc.errno != errno.EIO:
                        raise
                    data = b""
                if not data:
                    break  # every holder of the slave side has exited
                _write_all(1, data)
        _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        return 128 - code if code < 0 else code

    def restore(self) -> None:
        if self._saved is not None:
            termios.tcsetattr(0, termios.TCSADRAIN, self._saved)
            self._saved = None
        self.close_slave()
        if self.master >= 0:
            os.close(self.master)
            self.master = -1


def _write_all(fd: int, data: bytes) -> None:
    while data:
        written = os.write(fd, data)
        data = data[written:]
