from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.core.paths import normalize_artifact_path, safe_join
from conveyor.errors import UnsafePathError, ValidationError

TRAVERSALS = {
    "parent": "../secret",
    "parent in the middle": "a/../../secret",
    "parent at the end": "a/b/..",
    "parent alone": "..",
    "windows parent": "..\\secret",
    "windows separators": "a\\b.txt",
    "encoded parent": "%2e%2e%2fsecret",
    "encoded parent, upper case": "%2E%2E%2Fsecret",
    "encoded slash only": "..%2fsecret",
    "double-encoded parent": "%252e%252e%252fsecret",
    "encoded backslash": "..%5csecret",
    "encoded nul": "a%00.txt",
    "absolute posix": "/etc/passwd",
    "absolute posix, double slash": "//etc/passwd",
    "windows drive, backslash": "C:\\Windows\\system32",
    "windows drive, slash": "C:/Windows",
    "windows drive, relative": "C:Windows",
    "unc share": "\\\\server\\share\\x",
    "file url": "file:///etc/passwd",
    "s3 url": "s3://bucket/key",
    "http url": "http://example.com/x",
    "bare scheme": "data:text/plain,hi",
    "anything that reads as a scheme": "model:v1/x",
    "nul": "a\x00.txt",
    "newline": "a\nb.txt",
    "escape": "a\x1b[31m.txt",
    "delete": "a\x7f.txt",
    "c1 control": "a\x85.txt",
    "home": "~/x",
    "other user's home": "~root/x",
    "empty": "",
    "only dots and slashes": "././/.",
}


@pytest.mark.parametrize("path", TRAVERSALS.values(), ids=TRAVERSALS.keys())
def test_unsafe_paths_are_rejected(path: str) -> None:
    with pytest.raises(UnsafePathError) as caught:
        normalize_artifact_path(path)
    assert caught.value.path == path
    assert caught.value.field == "path"
    assert caught.value.rule
    assert isinstance(caught.value, ValidationError)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    ("path", "rule_word"),
    [
        ("../x", "'..'"),
        ("%2e%2e%2f", "percent-encoded"),
        ("/x", "absolute"),
        ("C:\\x", "absolute"),
        ("file:///x", "scheme"),
        ("a\\b", "backslash"),
        ("a\x00b", "control"),
        ("~/x", "~"),
        ("", "empty"),
    ],
)
def test_the_error_names_the_rule(path: str, rule_word: str) -> None:
    with pytest.raises(UnsafePathError, match=rule_word) as caught:
        normalize_artifact_path(path)
    assert rule_word in caught.value.rule


@pytest.mark.parametrize(
    ("path", "normalized"),
    [
        ("model.onnx", "model.onnx"),
        ("plots/roc.png", "plots/roc.png"),
        ("./plots//roc.png/", "plots/roc.png"),
        ("a/./b/./c.txt", "a/b/c.txt"),
        ("données/模型/ñ.txt", "données/模型/ñ.txt"),
        ("emoji/🚀.json", "emoji/🚀.json"),
        ("...", "..."),
        ("..hidden/x..y", "..hidden/x..y"),
        ("a/~/b", "a/~/b"),
        ("100%/x", "100%/x"),
        ("a%zz", "a%zz"),
        ("name with spaces.txt", "name with spaces.txt"),
        ("notes/a:b.txt", "notes/a:b.txt"),
    ],
)
def test_safe_paths_are_normalized(path: str, normalized: str) -> None:
    assert normalize_artifact_path(path) == normalized


def test_safe_join_stays_inside_root(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "./a//b.txt") == tmp_path.resolve() / "a" / "b.txt"


def test_safe_join_resolves_a_relative_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert safe_join(Path("dest"), "x") == tmp_path.resolve() / "dest" / "x"


def test_safe_join_applies_the_path_rules(tmp_path: Path) -> None:
    with pytest.raises(UnsafePathError):
        safe_join(tmp_path, "../x")


def test_safe_join_rejects_a_symlinked_folder_pointing_out(tmp_path: Path) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "escape").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        safe_join(dest, "escape/file.txt")


def test_safe_join_rejects_a_dangling_symlink_pointing_out(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "file.txt").symlink_to(tmp_path / "not-yet-there.txt")
    with pytest.raises(UnsafePathError):
        safe_join(dest, "file.txt")


def test_safe_join_follows_symlinks_that_stay_inside(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "real")
    assert safe_join(tmp_path, "alias/x") == tmp_path.resolve() / "real" / "x"


def test_safe_join_accepts_a_root_that_is_itself_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert safe_join(tmp_path / "link", "x") == (tmp_path / "real").resolve() / "x"
