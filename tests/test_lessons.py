"""Every lesson in tutorial/ runs from the shipped weights on a fresh clone (CI: TOYDIFF_QUICK=1, fewer samples),
writes its figures, and refuses bad flags in one line; the slow test checks that the numbers docs/tutorial.md
quotes are the ones each lesson prints (run: python -m pytest -q -m slow tests/test_lessons.py)."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from test_data import write_idx

ROOT = pathlib.Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "tutorial").glob("[0-9][0-9]_*.py"))
UNQUOTED = ("done in", "wrote ", "judge: ")      # timing, paths and cache notes vary; every other line is quoted
ON_MNIST = {"08_mnist"}                          # lessons that read MNIST through torchvision (--data-dir)
REAL_MNIST = ROOT.parent / "shared" / "data"     # real MNIST on the development machine only; users download it


def fake_mnist(folder: pathlib.Path) -> str:
    """A tiny MNIST in torchvision's layout (random images, every class in both splits): the lesson's real loading
    code runs in CI, where MNIST cannot be downloaded; its numbers are meaningless."""
    rng = np.random.default_rng(0)
    raw = folder / "MNIST" / "raw"
    write_idx(raw, "train", rng.integers(0, 256, (100, 28, 28)), np.arange(100) % 10)
    write_idx(raw, "t10k", rng.integers(0, 256, (30, 28, 28)), np.arange(30) % 10)
    return str(folder)


def run_lesson(path: pathlib.Path, *args: str, quick: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "TOYDIFF_QUICK": "1" if quick else "0", "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, str(path), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_there_are_lessons():
    assert len(LESSONS) >= 6, [p.name for p in LESSONS]


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_runs_from_the_shipped_weights(lesson, tmp_path):
    data = ["--data-dir", fake_mnist(tmp_path / "data")] if lesson.stem in ON_MNIST else []
    done = run_lesson(lesson, "--out", str(tmp_path / "out"), *data)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert any(name.endswith((".png", ".gif")) for name in written), (written, done.stdout[-2000:])
    assert "done in" in done.stdout.splitlines()[-1]


def refused(lesson: pathlib.Path, args: list[str], message: str) -> None:
    done = run_lesson(lesson, *args)
    err = done.stderr.strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), (args, err)
    assert message in err, (args, err)


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_lesson_refuses_a_missing_checkpoint_before_writing(lesson, tmp_path):
    refused(lesson, ["--ckpt", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "out")], "not found")
    assert not (tmp_path / "out").exists()


def test_a_lesson_refuses_bad_flags_in_one_line(tmp_path):
    lesson, out = [p for p in LESSONS if p.stem not in ON_MNIST][-1], str(tmp_path / "out")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    refused(lesson, ["--ckpt", str(blocker), "--out", out], "not a toydiff checkpoint")
    refused(lesson, ["--out", str(blocker)], "--out")
    refused(lesson, ["--bogus", "--out", out], "unrecognized arguments")
    assert not (tmp_path / "out").exists() and blocker.read_text() == "x"


@pytest.mark.slow
@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_docs_quote_what_the_lesson_prints(lesson, tmp_path):
    """The full lesson (as documented): every line it prints, but its title, timings, paths and cache notes, is in
    docs/tutorial.md (or docs/<lesson>.md) word for word."""
    data = []
    if lesson.stem in ON_MNIST:
        if not (REAL_MNIST / "MNIST" / "raw").is_dir():
            pytest.skip(f"real MNIST is not in {REAL_MNIST}")
        data = ["--data-dir", str(REAL_MNIST)]
    done = run_lesson(lesson, "--out", str(tmp_path), *data, quick=False, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    docs = "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    missing = [line for line in done.stdout.splitlines()[1:]                 # the first line is the lesson's title
               if line.strip() and not line.lstrip().startswith(UNQUOTED) and line.rstrip() not in docs]
    assert not missing, "\n".join(missing)


def test_the_mnist_lesson_refuses_missing_data_before_writing(tmp_path):
    lesson = next(p for p in LESSONS if p.stem in ON_MNIST)
    refused(lesson, ["--data-dir", str(tmp_path / "no-mnist"), "--out", str(tmp_path / "out")], "--data-dir")
    assert not (tmp_path / "out").exists()
