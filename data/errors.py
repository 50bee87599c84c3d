"""The error raised when a dataset's files are not where we looked."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


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


def find_or_download(
    name: str,
    find: Callable[[], T | None],
    fetch: Callable[[], None],
    looked_in: Iterable[str | Path],
    download: bool,
) -> T:
    """``find()``'s answer; when it finds nothing and ``download`` is set, ``fetch()`` and look again.

    Anything still missing (or a failed download: network, disk, checksum) becomes
    one DatasetNotFound naming where we looked and how to get the data.
    """
    found = find()
    failure: Exception | None = None
    if found is None and download:
        try:
            fetch()
        except Exception as error:
            failure = error
        found = find()
    if found is None:
        from data.info import dataset_info

        raise DatasetNotFound(name, looked_in, dataset_info(name).how_to_get, download_failure(failure)) from failure
    return found
