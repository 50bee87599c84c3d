"""The error raised when a dataset's files are not where we looked."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path


class DatasetNotFound(FileNotFoundError):
    """A dataset's files are missing (or a download failed).

    The message is a single line: which dataset, every path that was searched,
    and how to get the data, so that a config validation error or a failed run
    tells the user everything in one place.
    """

    def __init__(self, name: str, looked_in: Iterable[str | Path], how_to_get: str, detail: str = "") -> None:
        self.name = name
        self.looked_in = [str(p) for p in looked_in]
        self.how_to_get = how_to_get
        self.detail = detail
        parts = [f"dataset {name!r} not found", f"looked in: {', '.join(self.looked_in) or '(nowhere)'}"]
        if detail:
            parts.append(detail)
        parts.append(f"to get it: {how_to_get}")
        message = "; ".join(" ".join(part.split()) for part in parts)  # collapse any newline to keep one line
        super().__init__(message)

    def __reduce__(self):
        # Rebuild from our own arguments, so the error survives pickling (e.g. out of a DataLoader worker).
        return type(self), (self.name, self.looked_in, self.how_to_get, self.detail)

    def __str__(self) -> str:
        # FileNotFoundError's default __str__ formats errno/filename; we want our own line only.
        return str(self.args[0])


def download_failure(error: BaseException | None) -> str:
    """The detail DatasetNotFound gives for a failed download ("" when there was none)."""
    return "" if error is None else f"download failed: {type(error).__name__}: {error}"
