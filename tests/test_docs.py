"""The documentation says only what is true of this repository: README short, the config reference generated from
the schema, and no name of a file, config or output path that the repository does not have or the code does not write.
"""

from __future__ import annotations

import glob
import re
import subprocess
from pathlib import Path

import pytest

from utils import config_reference

ROOT = Path(__file__).resolve().parents[1]
README_LIMIT = 12_000
# Top-level folders of the repository: a token that starts with one of them names a file of ours.
OUR_FOLDERS = ("configs", "configs_cifar100", "scripts", "docs", "analysis", "benchmarks", "examples", "tests",
               "matching", "models", "pruning", "phases", "sweep", "tracking", "training", "utils", "data", ".ci")
# Files users never get: background notes outside the repository. Spelled in pieces so this file does not match.
FORBIDDEN = ("DESIGN" + ".md", "PAPER" + ".md", "../" + "shared")
TEXT_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".sh", ".txt", ".toml", ".csv", ".cfg", ""}


def tracked_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                         capture_output=True, check=False)
    if out.returncode != 0:  # not a git checkout (an unpacked archive): every file but caches
        return [p for p in ROOT.rglob("*") if p.is_file() and not any(
            part.startswith(".venv") or part in ("__pycache__", "site", "runs", ".git") for part in p.parts)]
    return [ROOT / name for name in out.stdout.decode().split("\0") if name]


def text_files() -> list[Path]:
    return [p for p in tracked_files()
            if p.is_file() and p.suffix in TEXT_SUFFIXES and p.stat().st_size < 2_000_000]


def read(path: Path) -> str:
    """A file's text; "" for one that went away since it was listed (another test's scratch file)."""
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def test_readme_is_short() -> None:
    size = len((ROOT / "README.md").read_text())
    assert size <= README_LIMIT, f"README.md has {size} characters (at most {README_LIMIT}): move detail to docs/"


def test_config_reference_is_generated_from_the_schema() -> None:
    page = ROOT / "docs" / "config-reference.md"
    assert page.read_text() == config_reference.render(), \
        "docs/config-reference.md is out of date: run python -m utils.config_reference"


def test_config_reference_lists_every_key_with_its_default() -> None:
    text = config_reference.render()
    from utils.config import Config
    cfg = Config()
    # spot checks against the schema itself, so a renderer that dropped defaults would fail
    assert f"| `optimizer.lr` | float | `{cfg.optimizer.lr}` |" in text
    assert f"| `pruning.sparsity` | float | `{cfg.pruning.sparsity}` |" in text
    assert "| `rewind_points` | list[int] | `[0, 5, 10, 15, 20, 25, 50, 75, 100]` |" in text
    assert text.count("\n| `") == len(list(config_reference.keys()))


def test_a_key_without_a_meaning_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    meanings = dict(config_reference.MEANINGS)
    del meanings["optimizer.lr"]
    monkeypatch.setattr(config_reference, "MEANINGS", meanings)
    with pytest.raises(ValueError, match="optimizer.lr"):
        config_reference.render()
    monkeypatch.setattr(config_reference, "MEANINGS", {**config_reference.MEANINGS, "no_such_key": "x"})
    with pytest.raises(ValueError, match="no_such_key"):
        config_reference.render()


def test_no_file_names_background_notes_outside_the_repository() -> None:
    hits = []
    for path in text_files():
        text = read(path)
        for name in FORBIDDEN:
            if name in text:
                hits.append(f"{path.relative_to(ROOT)}: {name}")
    assert not hits, "files name notes users do not have:\n" + "\n".join(hits)


_FOLDERS = "|".join(re.escape(f) for f in OUR_FOLDERS)
_PATH = re.compile(r"(?<![\w./<-])((?:" + _FOLDERS + r")/[\w./*{},<>+=-]*[\w*}>/])")


def _expand_braces(pattern: str) -> list[str]:
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    if "," not in m.group(1):  # a named placeholder, `config_{width}_{sparsity}.yaml`
        return _expand_braces(pattern[:m.start()] + "*" + pattern[m.end():])
    return [x for alt in m.group(1).split(",") for x in _expand_braces(pattern[:m.start()] + alt + pattern[m.end():])]


# Folders the code writes under a save_path whose names begin like one of ours (sweep/ is also a package).
SAVE_PATH_FOLDERS = ("sweep/records", "sweep/logs")


def _exists(token: str) -> bool:
    if token.rstrip("/").startswith(SAVE_PATH_FOLDERS):
        return True
    if not (ROOT / token).exists() and re.fullmatch(r"[\w/]+\.\w+", token):  # a dotted name: module.function
        if (ROOT / (token.split(".")[0] + ".py")).exists():
            return True
    if "<" in token:  # a placeholder (`docs/<page>.md`): the folder before it must exist
        return (ROOT / token.split("<")[0]).parent.exists() or (ROOT / token.split("<")[0]).exists()
    for pattern in _expand_braces(token):
        if any(c in pattern for c in "*?["):
            if not glob.glob(str(ROOT / pattern)):
                return False
        elif not (ROOT / pattern).exists():
            return False
    return True


def named_paths(text: str) -> list[str]:
    """Every repository path ``text`` names (``configs/config_1_90.yaml``, ``scripts/demo.sh``, ``docs/``, ...)."""
    found = []
    for m in _PATH.finditer(text):
        token = m.group(1).rstrip(".,")
        if token.endswith("/") and token.count("/") == 1:  # a folder name alone, `data/`
            token = token[:-1]
        found.append(token)
    return found


def test_named_repository_paths_exist() -> None:
    missing = []
    for path in text_files():
        if path.suffix == ".csv" or path.name in (".gitignore", "test_docs.py"):  # data; ignored outputs; examples
            continue
        for token in named_paths(read(path)):
            if not _exists(token):
                missing.append(f"{path.relative_to(ROOT)}: {token}")
    assert not missing, "named files that are not in the repository:\n" + "\n".join(sorted(set(missing)))


def test_the_path_finder_finds_a_dangling_name() -> None:
    text = "see configs/resnet20_w1_s90.yaml and scripts/demo.sh, `configs/config_*.yaml`, configs/vgg11_{80,90}.yaml"
    tokens = named_paths(text)
    assert tokens == ["configs/resnet20_w1_s90.yaml", "scripts/demo.sh", "configs/config_*.yaml",
                      "configs/vgg11_{80,90}.yaml"]
    assert [_exists(t) for t in tokens] == [False, True, True, True]
    assert not _exists("configs/vgg11_{80,99}.yaml")


_LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_markdown_links_point_at_files_that_exist() -> None:
    missing = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *sorted(ROOT.glob("benchmarks/*.md"))]:
        for target in _LINK.findall(path.read_text()):
            if re.match(r"[a-z]+:", target) or target.startswith("#"):
                continue
            file = target.split("#")[0]
            if not (path.parent / file).exists():
                missing.append(f"{path.relative_to(ROOT)}: {target}")
    assert not missing, "links to files that do not exist:\n" + "\n".join(missing)


def test_help_names_only_configs_that_exist() -> None:
    from sweep.cli import build_parser as sweep_parser
    from utils.cli import build_parser

    for parser in (build_parser(), sweep_parser()):
        text = parser.format_help()
        tokens = [t for t in named_paths(text) if t.startswith("configs")]
        assert tokens or parser.prog.startswith("python -m sweep"), "experiment.py -h names no example config"
        for token in tokens:
            assert _exists(token), f"{parser.prog} -h names {token}, which does not exist"


_RUN_DIR = re.compile(r"runs/([^/\s`'\"]+)/seed_")


def test_documented_run_directories_have_the_name_the_code_gives() -> None:
    """A run directory is ``<label>-<config hash>``; the demo's too (``runs/demo-<config hash>/seed_<N>/``)."""
    from phases.run_dir import run_dir_name
    from phases.runner import resolved_config, run_label

    demo = run_dir_name(run_label(None), resolved_config(None, [], device="cpu"))
    assert re.fullmatch(r"demo-[0-9a-f]{10}", demo), demo
    wrong = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md")), *ROOT.glob("*/*.py"), *ROOT.glob("*.py")]:
        if path.name == "test_docs.py":
            continue
        for name in _RUN_DIR.findall(path.read_text(errors="replace")):
            # the hash is written out, a placeholder, or a glob
            if not re.search(r"-([0-9a-f]{10}|<[^>]*hash>|\*)$", name):
                wrong.append(f"{path.relative_to(ROOT)}: runs/{name}/seed_")
    assert not wrong, "run directories named without their config hash:\n" + "\n".join(wrong)
