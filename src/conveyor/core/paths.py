"""Validation of user-given artifact paths, so none can leave the root it is stored under.

Every check here is on the text of the path, except in `safe_join`, which also
resolves symbolic links already present under the root.
"""

from __future__ import annotations

import re
from pathlib import Path

from conveyor.errors import UnsafePathError

__all__ = ["normalize_artifact_path", "safe_join"]

# Percent-decoding can be applied more than once downstream (``%252e`` becomes
# ``%2e`` becomes ``.``), so no encoded sequence is let through at all.
_PERCENT_ENCODED = re.compile(r"%[0-9A-Fa-f]{2}")
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:[\\/]")
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")


def _is_control(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code <= 0x9F


def _textual_violation(path: str) -> str | None:
    """The first rule that ``path`` breaks as a whole string, or None."""
    if not path:
        return "an artifact path must not be empty"
    if any(_is_control(char) for char in path):
        return "NUL and other control characters are not allowed"
    if _PERCENT_ENCODED.search(path):
        return "percent-encoded sequences (such as %2e) are not allowed; give the path decoded"
    if path.startswith(("/", "\\")) or _WINDOWS_DRIVE.match(path):
        return "absolute paths are not allowed; give a path relative to the run"
    if _URL_SCHEME.match(path):
        return "URLs and scheme prefixes (such as file: or s3:) are not allowed"
    if "\\" in path:
        return "backslashes are not allowed; separate folders with '/'"
    if path.startswith("~"):
        return "a leading '~' (home folder) is not allowed"
    return None


def normalize_artifact_path(path: str) -> str:
    """Validate a run-relative artifact path and return it in normal posix form.

    Empty and ``.`` segments are dropped, so ``"./a//b/"`` becomes ``"a/b"``.
    Any Unicode character other than a control character is allowed.

    Args:
        path: the path a user gave, such as ``"plots/roc.png"``.

    Returns:
        The path as ``/``-separated segments with no empty or ``.`` segment.

    Raises:
        UnsafePathError: the path is empty, absolute, a URL, contains ``..``,
            a backslash, a control character or a percent-encoded sequence, or
            starts with ``~``; the error names the rule.
    """
    rule = _textual_violation(path)
    if rule is not None:
        raise UnsafePathError(path, rule)
    segments = [segment for segment in path.split("/") if segment not in ("", ".")]
    if ".." in segments:
        raise UnsafePathError(path, "'..' segments are not allowed")
    if not segments:
        raise UnsafePathError(path, "the path names no file (only '.' and '/')")
    return "/".join(segments)


def safe_join(root: Path, rel: str) -> Path:
    """Join a user-given path under ``root``, refusing any result outside it.

    Symbolic links already present under ``root`` are followed, so a link that
    points out of ``root`` is caught. A link created after this call returns is
    not: callers writing into folders others can change must not rely on it.

    Args:
        root: the folder everything must stay in.
        rel: a run-relative artifact path, validated by `normalize_artifact_path`.

    Returns:
        The resolved absolute path, inside ``root.resolve()``.

    Raises:
        UnsafePathError: ``rel`` breaks a rule of `normalize_artifact_path`, or
            resolves outside ``root`` through a symbolic link.
    """
    normalized = normalize_artifact_path(rel)
    resolved_root = root.resolve()
    candidate = (resolved_root / normalized).resolve()
    if not candidate.is_relative_to(resolved_root):
        raise UnsafePathError(rel, "it resolves outside the root through a symbolic link")
    return candidate
