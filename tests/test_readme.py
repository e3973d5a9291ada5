"""The README's command-line examples run as written.

Every `sh` block of the README's "Command line" section is run in order, one command at a time (a line ending
in `\\` continues on the next), by bash, in a fresh working directory, with the installed `facetrail` first on
the PATH; the data directory is the default, `./facetrail-data`, so the block's own `facetrail init` makes it.
A command must exit 0. The placeholders the README uses are real files there:

- `photos/`: a folder with four sample photos; `more.zip`: a zip archive of two others; `single.jpg` one more;
- `query.jpg`: a photo of Barack Obama that is not in the collection (`obama2.jpg`);
- `/backups/` stands for a `backups/` folder in the working directory, and port 8000 for a free port.

A command that serves (`serve`, or `demo` without `--no-serve`) is started, must answer `/health`, then is
stopped. New examples added to the section are run with the rest; a placeholder they need goes in `stage()`.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx2 as httpx
import pytest
from bench.load import free_port

from tests.conftest import ROOT, SAMPLES

README = ROOT / "README.md"
SECTION = "## Command line"


def readme_commands(text: str) -> list[str]:
    """The commands of the `sh` blocks of the Command line section, in order, continuations joined."""
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start:end if end != -1 else len(text)]
    commands: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", section, flags=re.DOTALL):
        pending = ""
        for line in block.splitlines():
            if line.rstrip().endswith("\\"):
                pending += line.rstrip()[:-1] + " "
                continue
            command = (pending + line).strip()
            pending = ""
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def stage(work: Path) -> None:
    """The files the README's examples name, made of the bundled sample photos."""
    (work / "photos").mkdir()
    for name in ("obama.jpg", "biden.jpg", "obama_small.jpg", "two_people.jpg"):
        shutil.copy(SAMPLES / name, work / "photos" / name)
    with zipfile.ZipFile(work / "more.zip", "w") as archive:
        for name in ("kit_harington1.jpeg", "rose_leslie1.jpg"):
            archive.write(SAMPLES / name, name)
    shutil.copy(SAMPLES / "biden2.jpg", work / "single.jpg")
    shutil.copy(SAMPLES / "obama2.jpg", work / "query.jpg")
    (work / "backups").mkdir()


def serves(command: str) -> bool:
    words = shlex.split(command, comments=True)
    return words[1:2] == ["serve"] or (words[1:2] == ["demo"] and "--no-serve" not in words)


def run_server(command: str, port: int, cwd: Path, env: dict[str, str]) -> None:
    proc = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"{command!r} exited {proc.returncode}:\n{proc.stdout.read() if proc.stdout else ''}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        pytest.fail(f"{command!r} did not answer /health within 180 s")
    finally:
        os.killpg(proc.pid, 15)  # bash and the server it started
        proc.wait(timeout=30)


def test_the_extractor_reads_the_section_in_order() -> None:
    text = "## Command line\n```sh\nfacetrail a \\\n    --b c   # note\n# a comment\n\nfacetrail d\n```\n" \
           "## Next\n```sh\nfacetrail e\n```\n"
    assert readme_commands(text) == ["facetrail a      --b c   # note", "facetrail d"]


@pytest.mark.slow
def test_the_readme_command_line_examples_run_as_written(tmp_path: Path) -> None:
    commands = readme_commands(README.read_text())
    assert commands and commands[0].startswith("facetrail init"), commands[:1]
    work = tmp_path / "work"
    work.mkdir()
    stage(work)
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "facetrail").exists(), "the facetrail command is not installed beside this Python"
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "FACETRAIL_WORKERS": "1"}
    env.pop("FACETRAIL_DATA", None)
    for command in commands:
        port = free_port()
        runnable = command.replace("/backups/", f"{work}/backups/").replace("--port 8000", f"--port {port}")
        if serves(command):
            run_server(runnable, port, work, env)
            continue
        done = subprocess.run(["bash", "-c", runnable], cwd=work, env=env, capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, f"{command!r} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
