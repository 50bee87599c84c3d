"""What makes a path string unusable on any file system, said before the OS is asked.

``Path.exists()`` raises (not returns False) for a NUL character (ValueError) and for a name longer than the
file system allows (OSError ENAMETOOLONG): a config holding such a path would otherwise end in a traceback
from whichever check first looked at it.
"""

from __future__ import annotations

import os

NAME_MAX = 255  # bytes in one path component (ext4, xfs, btrfs, tmpfs, NFS)
PATH_MAX = 4096  # bytes in a whole path (Linux)


def path_problem(path: str) -> str | None:
    """Why ``path`` cannot name a file anywhere, or None."""
    if "\0" in path:
        return "a path cannot hold a NUL character"
    encoded = os.fsencode(path)
    if len(encoded) >= PATH_MAX:
        return f"a path of {len(encoded)} bytes is longer than the system allows ({PATH_MAX - 1})"
    longest = max(encoded.split(b"/"), key=len)
    if len(longest) > NAME_MAX:
        return f"a file or folder name of {len(longest)} bytes is longer than the system allows ({NAME_MAX})"
    return None
