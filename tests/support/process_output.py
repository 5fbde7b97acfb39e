"""Reading a child process's output with deadlines, so a test waiting for a line cannot hang."""

from __future__ import annotations

import queue
import re
import subprocess
import threading
import time


class Output:
    """A process's stderr, read line by line in a thread so that waiting for a line has a
    deadline instead of hanging the test."""

    def __init__(self, process: subprocess.Popen):
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, args=(process.stderr,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 30.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no line matching {pattern!r} within {timeout} s; got:\n{''.join(self.seen)}")
