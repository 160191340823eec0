"""A small filesystem that a test can fill: a tmpfs the test mounts itself, so that the broker
meets ENOSPC at the moment the test chooses.

Mounting needs root (or CAP_SYS_ADMIN); `mount_small_disk` skips the test with the reason when
the mount is refused. Every mount is undone by the fixture that made it, even when the test
fails.
"""

import errno
import os
import subprocess
from pathlib import Path

import pytest

CHUNK_BYTES = 64 * 1024


def mount_small_disk(path, size="8m", inodes=4096):
    """Mounts a tmpfs of `size` bytes and `inodes` inodes at `path` (created if missing), or
    skips the test if this machine does not allow it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (to make the disk fill up)")
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},nr_inodes={inodes}", "tmpfs", str(path)],
            check=True,
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", b"") or b""
        pytest.skip(f"cannot mount a tmpfs here ({e} {detail.decode(errors='replace').strip()})")
    return path


def unmount(path):
    """Unmounts `path`; lazily if something still holds it, so a test never leaves a mount."""
    result = subprocess.run(["umount", str(path)], capture_output=True, timeout=10)
    if result.returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10)


class Filler:
    """Takes every free block and inode of a filesystem, and gives them back on `free()`."""

    def __init__(self, root):
        self.dir = Path(root) / "filler"

    def fill(self):
        self.dir.mkdir(exist_ok=True)
        blocks = self.dir / "blocks"
        with open(blocks, "ab", buffering=0) as f:
            chunk = b"\0" * CHUNK_BYTES
            size = len(chunk)
            while size >= 1:
                try:
                    if not f.write(chunk[:size]):
                        size //= 2
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    size //= 2
        # Then every inode, so that creating even an empty file or a directory fails.
        n = 0
        while True:
            try:
                (self.dir / f"i{n}").touch()
                n += 1
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                break
        return self

    def free(self):
        if self.dir.exists():
            for p in self.dir.iterdir():
                p.unlink()
            self.dir.rmdir()


def free_bytes(root):
    st = os.statvfs(root)
    return st.f_bavail * st.f_frsize
