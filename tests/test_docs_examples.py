"""Every ```python block of README.md and docs/*.md runs as a newcomer pastes it.

The rule, for the docs and for this test:

* A page's blocks are one session: pasted in order into one Python script, started in an empty
  folder, they run. The test runs each page's blocks concatenated in order, as one script
  (``sys.executable FILE``) in a fresh interpreter, with an empty temporary folder as its working
  directory. A block may use what an earlier block of its page defined, and the page's
  prose says so; the first block of a page defines everything it uses. No block reads a file of the
  repository: shipped data come through ``bayescal:`` paths or ``importlib.resources``, and a
  config or data file a block needs, it writes.
* A block preceded by ``<!-- example: not run (REASON) -->`` is left out of its page's session and
  its test is skipped with that reason (it needs SLURM, or a finished multi-minute run, or it meets a
  bayescal bug); no later block of the page may use what it defines.

Each block is one test, named by its page and its index among the page's ```python blocks
(``runner.md-1``: the second). A page's script runs once, when the first of its tests needs it;
each block's test then reports that block's outcome with that block's stderr (a block after one
that failed is reported as not reached). Numba, OpenMP and BLAS run one thread each (as on the
suite's workers: on shared cores more threads only contend), and matplotlib draws on its Agg backend.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NOT_RUN = re.compile(r"<!-- example: not run \((.+?)\) -->")
FENCE = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
SEPARATOR = "----- bayescal docs example, block "
TIMEOUT = 600
#: pages whose session takes more than ~15 s on a 2-core machine shared with another job
SLOW_PAGES = {"pipeline.md"}  # every stage of a small global pipeline, the report's figures included


@dataclass(frozen=True)
class Block:
    doc: str  # "README.md", "own-model.md"
    index: int  # among the doc's ```python blocks
    code: str
    skip: str | None  # the reason it is not run

    @property
    def id(self) -> str:
        return f"{self.doc}-{self.index}"


def _blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    out = []
    for i, match in enumerate(FENCE.finditer(text)):
        lines = text[: match.start()].rstrip("\n").splitlines()
        before = lines[-1].strip() if lines else ""  # the line right above the fence
        skip = NOT_RUN.fullmatch(before)
        if before.startswith("<!-- example") and skip is None:
            raise ValueError(f"{path.name}, block {i}: unknown example marker {before!r}; "
                             "the one marker is <!-- example: not run (REASON) -->")
        out.append(Block(path.name, i, match.group(1), skip.group(1) if skip else None))
    return out


BLOCKS = [b for doc in DOCS for b in _blocks(doc)]
_PAGES: dict[str, dict] = {}  # page -> the outcome of its session


def _script(session: list[Block], status: Path) -> str:
    """The page's blocks as one script: before each block a separator line on stdout and stderr,
    after it the block's index appended to ``status`` (so a block that raises stops the script
    with its traceback, and the blocks before it are known to have finished)."""
    parts = []
    for b in session:
        line = "\n" + SEPARATOR + str(b.index)  # on a line of its own, after a progress bar's \r too
        parts.append(f"import sys as _s; print({line!r}, file=_s.stdout, flush=True); "
                     f"print({line!r}, file=_s.stderr, flush=True)\n")
        parts.append(b.code.rstrip("\n") + "\n")
        parts.append(f"open({str(status)!r}, 'a').write({str(b.index) + chr(10)!r})\n")
    return "".join(parts)


def _split(text: str) -> dict[int, str]:
    parts = re.split(rf"^{re.escape(SEPARATOR)}(\d+)\n", text, flags=re.M)
    return {int(parts[k]): parts[k + 1] for k in range(1, len(parts) - 1, 2)}


def _run_session(session: list[Block], folder: Path) -> dict:
    status = folder.parent / f"{folder.name}.status"
    script = folder.parent / f"{folder.name}.py"  # beside the working folder, not in it
    script.write_text(_script(session, status), encoding="utf-8")
    env = {**os.environ, "MPLBACKEND": "Agg"}
    for var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    proc = subprocess.run([sys.executable, str(script)], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    finished = {int(i) for i in status.read_text().split()} if status.exists() else set()
    return {"returncode": proc.returncode, "finished": finished, "stderr": _split(proc.stderr),
            "all_stderr": proc.stderr, "script": script}


@pytest.mark.parametrize("block", [pytest.param(b, id=b.id, marks=[pytest.mark.slow] if b.doc in SLOW_PAGES
                                                 else []) for b in BLOCKS])
def test_docs_example_runs(block: Block, tmp_path_factory):
    if block.skip:
        pytest.skip(f"marked not run: {block.skip}")
    session = [b for b in BLOCKS if b.doc == block.doc and not b.skip]
    if block.doc not in _PAGES:
        _PAGES[block.doc] = _run_session(session, tmp_path_factory.mktemp(block.doc))
    res = _PAGES[block.doc]
    if block.index in res["finished"]:
        return
    earlier = [b.id for b in session if b.index < block.index and b.index not in res["finished"]]
    if earlier:
        pytest.fail(f"{block.id} not reached: {earlier[0]}, earlier in the page's session, failed",
                    pytrace=False)
    err = res["stderr"].get(block.index, res["all_stderr"])
    pytest.fail(f"{block.id} failed (exit {res['returncode']}; {res['script']} runs "
                f"{' + '.join(b.id for b in session)})\n--- its stderr (last 60 lines):\n"
                + "\n".join(err.splitlines()[-60:]), pytrace=False)


def test_every_doc_with_code_has_its_blocks_found():
    """The fence pattern finds each ```python block: as many as the docs open."""
    for doc in DOCS:
        opened = len(re.findall(r"^```python$", doc.read_text(encoding="utf-8"), re.M))
        assert opened == len(_blocks(doc)), doc.name
    assert any(not b.skip for b in BLOCKS)
