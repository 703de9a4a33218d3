"""The docs run as written: every code block of README.md and docs/*.md.

How a page's code blocks are tested (what a page author needs to know):

* ```python blocks of one page run one after the other in one namespace, in a fresh temporary
  folder that is the working directory: as a reader pasting them in order would (a later block
  may use an earlier one's names; ``runs/...`` paths land in that folder).
* ```bash blocks run in order with ``bash -e -o pipefail`` in the same folder, this
  interpreter's bin folder first on PATH (so ``fastmbrl`` is the installed command).
* Blocks in any other language (``text``, ``yaml``, ``json``, ...) are not run: use ``text`` for
  output, usage synopses and error messages.
* A python or bash block that cannot run in CI (it installs packages, starts a cluster, drives a
  real plant, or takes minutes) has the line ``<!-- docs-test: skip -->`` directly above its
  fence, optionally with a reason: ``<!-- docs-test: skip (installs packages) -->``. The comment
  is invisible on GitHub and on the site. A skipped block is still checked: python must compile;
  bash must pass ``bash -n``, every ``fastmbrl ...`` command in it must parse with the CLI's own
  parser, and every ``benchmarks/*.py`` script it names must exist.
* Keep a page's runnable blocks small (tiny configs, a few episodes): this whole file should
  stay under about a minute.

Some pages have extra checks (``PAGE_CHECKS``), e.g. the error messages quoted in "Custom
environments" are the ones fastmbrl raises. New pages under docs/ are picked up by themselves and
must be in mkdocs.yml's navigation.
"""
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
SKIP = re.compile(r"^<!--\s*docs-test:\s*skip\b.*-->$")
RUN_LANGS = ("python", "bash")


@dataclass
class Block:
    page: Path
    line: int           # 1-based line of the opening fence
    lang: str
    code: str
    skip: bool

    @property
    def where(self):
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def blocks(page):
    """The fenced code blocks of ``page``, in order (fences may be indented, e.g. in lists)."""
    out, lines = [], page.read_text(encoding="utf-8").splitlines()
    i, previous = 0, ""
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped.startswith("```"):
            indent = lines[i][:len(lines[i]) - len(lines[i].lstrip())]
            lang = stripped[3:].strip().split(" ")[0].lower()
            start, body = i + 1, []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i][len(indent):] if lines[i].startswith(indent) else lines[i])
                i += 1
            out.append(Block(page, start, lang, "\n".join(body) + "\n",
                             bool(SKIP.match(previous))))
            previous = ""
        elif stripped:
            previous = stripped
        i += 1
    return out


def _code_blocks():
    return [b for page in PAGES for b in blocks(page) if b.lang in RUN_LANGS]


def _runnable_pages():
    return [p for p in PAGES if any(b.lang in RUN_LANGS and not b.skip for b in blocks(p))]


# ------------------------------------------------------------------ checks of every block
def _commands(code):
    """The simple commands of a bash block (continuations joined, comments dropped), as token
    lists split at ``&&``, ``||``, ``;`` and ``|``."""
    text = code.replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        try:
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            lexer.commenters = "#"
            tokens = list(lexer)
        except ValueError:
            continue
        cmd = []
        for tok in tokens:
            if tok in ("&&", "||", ";", "|", "&"):
                if cmd:
                    out.append(cmd)
                cmd = []
            else:
                cmd.append(tok)
        if cmd:
            out.append(cmd)
    return out


@pytest.mark.parametrize("block", _code_blocks(), ids=lambda b: b.where)
def test_code_block_compiles_and_names_real_commands(block):
    if block.lang == "python":
        compile(block.code, block.where, "exec")
        return
    check = subprocess.run(["bash", "-n"], input=block.code, text=True, capture_output=True)
    assert check.returncode == 0, f"{block.where}: bash -n: {check.stderr}"
    from fastmbrl.cli import _build_parser

    for cmd in _commands(block.code):
        for tok in cmd:
            for script in re.findall(r"benchmarks/[\w/.-]+\.(?:py|sh)", tok):
                assert (ROOT / script).is_file(), f"{block.where}: no such script {script}"
        if cmd and cmd[0] == "fastmbrl":
            try:
                _build_parser().parse_args(cmd[1:])
            except SystemExit as exc:      # --help and friends
                assert exc.code == 0, f"{block.where}: {shlex.join(cmd)}"
            except Exception as exc:       # the CLI's usage error
                pytest.fail(f"{block.where}: {shlex.join(cmd)}: {exc}")


def test_every_docs_page_is_in_the_navigation():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for page in PAGES[1:]:
        assert re.search(rf":\s*{re.escape(page.name)}\s*$", nav, re.M), \
            f"docs/{page.name} is not in mkdocs.yml's nav"


def test_readme_links_exist():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        assert (ROOT / target).exists(), f"README.md links to {target}, which does not exist"


# ------------------------------------------------------------------ running the pages
def _check_custom_environments(ns, tmp_path):
    """The guide's runs happened, and the error messages it quotes are the real ones."""
    result, records = ns["result"], ns["records"]
    assert len(result.returns) == 1 and result.config.env_kwargs == {"g": 9.0}
    assert [(r["setting"], r["seed"]) for r in records] == [
        (f"planner.horizon={h}", s) for h in (5, 10) for s in range(2)]
    assert all(r["status"] == "finished" for r in records)
    for name in ("learning_curve.png", "time_split.png"):
        assert os.path.getsize(tmp_path / "runs" / "point_sweep" / name) > 10_000
    summary = (tmp_path / "runs" / "point_sweep" / "summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 4
    assert ns["d_act"].shape == (4, 1) and ns["d_obs"].shape == (4, 2)

    page = ROOT / "docs" / "custom_environments.md"
    quoted = next(b.code for b in blocks(page) if b.lang == "text")
    np, fm, numba, small = ns["np"], ns["fm"], ns["numba"], ns["small"]
    bad = {"np": np}
    exec("def reward_fn(obs, act):\n    return -obs[:, 0] ** 2\n\n"
         "def column(obs, act, next_obs):\n    return -next_obs[:, :1] ** 2\n", bad)
    for fn in (bad["reward_fn"], numba.njit(bad["reward_fn"]), bad["column"]):
        with pytest.raises((TypeError, ValueError)) as info:
            fm.run("PointOnALine-v0", episodes=1, seed=0, config=small, reward_fn=fn)
        message = f"{type(info.value).__name__}: {info.value}"
        assert message in quoted, message


PAGE_CHECKS = {"custom_environments.md": _check_custom_environments}


@pytest.mark.slow
@pytest.mark.parametrize("page", _runnable_pages(), ids=lambda p: p.name)
def test_page_runs_as_written(page, tmp_path, monkeypatch):
    import gymnasium as gym

    monkeypatch.chdir(tmp_path)
    env = {**os.environ,
           "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    registered = set(gym.registry)
    ns = {"__name__": f"docs_{page.stem}"}
    try:
        for block in blocks(page):
            if block.lang not in RUN_LANGS or block.skip:
                continue
            if block.lang == "python":
                exec(compile(block.code, block.where, "exec"), ns)
            else:
                done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", block.code],
                                      cwd=tmp_path, env=env, text=True, capture_output=True,
                                      timeout=300)
                assert done.returncode == 0, (f"{block.where} exited {done.returncode}:\n"
                                              f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        check = PAGE_CHECKS.get(page.name)
        if check is not None:
            check(ns, tmp_path)
    finally:
        for name in set(gym.registry) - registered:
            gym.registry.pop(name, None)
