"""Load test on loopback: concurrent searchers through the real server, first alone (the baseline), then while
a command-line ingestion and a data-subject erasure run (`make bench-load`).

Everything is driven from outside, as users do: the data directory is set up with the `facetrail` command line,
`facetrail serve` runs as a subprocess on 127.0.0.1, the searchers are HTTP clients (one thread and one
connection each, closed loop: each sends its next search as soon as the previous one is answered), the
ingestion is a `facetrail ingest` process on the same data directory (how large batches are meant to enter: one
vision process per core, beside the running server), and the erasure goes through the public portal (intake, the
code from the outbox, a live check answered with real photos of George W. Bush at the poses asked for) and the
DPO's API key (manual check, approval with a reason), so it runs inside the server while the searches do. Three
LFW photos of Bush are added to the samples: he is the person erased.

Every search is checked: any non-200 answer, exception or timeout is an error, and so is a wrong answer: an
Obama query whose first result is not Obama's face; a Bush query, finished before the erasure began, whose first
result is not Bush's face; a Bush query, started after the erasure completed, that returns any of his faces.
The query photos (obama2.jpg, George_W_Bush_0001.jpg) are held out of the collection, so no query finds itself.

    .venv/bin/python -m bench.load [--searchers 4] [--seconds 30] [--lfw-images 300] [--output BENCHMARKS.md]

Exits 1 when there is any error, 2 when the test could not be set up. Writes the section between
`<!-- load:start -->` and `<!-- load:end -->` of the output file (appended when absent; the rest of the file is
left alone).
"""

from __future__ import annotations

import argparse
import contextlib
import email
import html
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2
import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
SAMPLES = SHARED_DATA / "samples"
LFW = SHARED_DATA / "lfw" / "images"

PURPOSE = "investigation"
QUERIES = {"obama": "obama2.jpg", "bush": "George_W_Bush_0001.jpg"}  # held out of the collection
BUSH_HELD = ("George_W_Bush_0012.jpg", "George_W_Bush_0064.jpg", "George_W_Bush_0429.jpg")  # added to the samples
# The requester's live check: two LFW photos of Bush for each pose, every two of the six within the 'strong' band
# of each other, as frames of one capture would be (tests/rights/captures.py says how they were chosen).
BUSH_POSES = {"left": ("George_W_Bush_0263.jpg", "George_W_Bush_0155.jpg"),
              "right": ("George_W_Bush_0297.jpg", "George_W_Bush_0366.jpg"),
              "front": ("George_W_Bush_0225.jpg", "George_W_Bush_0209.jpg")}
OBAMA, BUSH = "barack_obama", "george_w_bush"
# People of the collection and of the live checks: never ingested from LFW.
LFW_EXCLUDED = frozenset({"Joseph_Biden", "Barack_Obama", "George_W_Bush", "Colin_Powell"})
REQUESTER = "joe@example.org"
SHOWN_BANDS = frozenset({"strong", "probable", "possible"})
START, END = "<!-- load:start -->", "<!-- load:end -->"
CODE = re.compile(r"Your confirmation code: (\d{6})")
RATE_LIMITS = ("FACETRAIL_SEARCH_PER_MINUTE", "FACETRAIL_REQUESTS_PER_MINUTE_PER_IP")
SERVER_PROBLEM = re.compile(r"Traceback|^ERROR|database is locked|\" 5\d\d |Fatal Python error|Segmentation fault|"
                            r"free\(\)|corrupted|double free|core dumped", re.MULTILINE)


class LoadTestError(Exception):
    """The load test could not be set up or run (not a search error: those are counted)."""


@dataclass(frozen=True)
class Config:
    searchers: int = 4
    seconds: float = 30.0
    lfw_images: int = 300
    output: Path | None = ROOT / "BENCHMARKS.md"
    erasure_delay: float | None = None  # seconds into the loaded phase; default a quarter of `seconds`
    max_seconds: float = 900.0  # the loaded phase waits for the ingestion and the erasure at most this long
    request_timeout: float = 60.0  # a search not answered by then is an error
    workdir: Path | None = None  # keep the data directory and the server's log here (default: a temporary one)
    note: str = ""  # a sentence for the report (what was special about this run)


@dataclass(frozen=True)
class Hit:
    face_id: int
    name: str  # the file name of the image the face is in
    band: str | None


@dataclass
class Search:
    phase: str
    kind: str  # obama | bush
    searcher: int
    start: float  # time.monotonic()
    end: float
    status: int | None = None
    hits: list[Hit] = field(default_factory=list)
    error: str = ""  # transport error, timeout or non-200 answer
    wrong: str = ""  # a 200 answer that is wrong (set by judge)
    window: str = ""  # bush queries: before, during or after the erasure

    @property
    def latency(self) -> float:
        return self.end - self.start

    @property
    def problem(self) -> str:
        return self.error or self.wrong


@dataclass
class Truth:
    """Who is in which sample (labels.tsv) and Bush's face ids in the store, found as the request workflow
    finds them: a search with the selfie at the 'strong' band, keeping faces in photos labelled as his."""

    people: dict[str, list[str]]
    bush_faces: frozenset[int] = frozenset()

    def shows(self, name: str, person: str) -> bool:
        return person in self.people.get(name, [])


@dataclass
class Ingestion:
    files: list[Path]
    start: float = 0.0
    end: float | None = None
    returncode: int | None = None
    report: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    process: subprocess.Popen[str] | None = None


@dataclass
class Erasure:
    start: float = 0.0  # the intake
    approve_start: float | None = None  # the DPO's approval, which runs the erasure in the server
    done: float | None = None
    request_id: str = ""
    status: str = ""
    receipt: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def completed(self) -> bool:
        return self.status == "completed" and bool(self.receipt) and not self.error


@dataclass(frozen=True)
class PhaseStats:
    name: str
    duration: float
    requests: int
    errors: int
    p50: float  # milliseconds
    p95: float
    p99: float
    max: float
    rated: bool = True  # False: the requests only overlap the span, so requests/span is no throughput

    @property
    def throughput(self) -> float:
        return self.requests / self.duration if self.duration > 0 else 0.0

    @property
    def rate(self) -> str:
        return f"{self.throughput:.2f}" if self.rated else "-"


@dataclass
class LoadResult:
    config: Config
    machine: dict[str, str]
    started_at: datetime
    samples_ingested: int
    searches: list[Search]
    phases: dict[str, tuple[float, float]]  # name -> (start, end), time.monotonic()
    ingestion: Ingestion
    erasure: Erasure
    truth: Truth
    server_problems: list[str]
    run_problems: list[str]

    def of_phase(self, name: str) -> list[Search]:
        return [s for s in self.searches if s.phase == name]

    @property
    def search_errors(self) -> list[Search]:
        return [s for s in self.searches if s.problem]

    @property
    def other_errors(self) -> list[str]:
        problems = list(self.run_problems)
        if self.ingestion.error:
            problems.append(f"ingestion: {self.ingestion.error}")
        if not self.erasure.completed:
            problems.append(f"erasure: {self.erasure.error or 'not completed (' + self.erasure.status + ')'}")
        elif set(self.erasure.receipt.get("face_ids", [])) != set(self.truth.bush_faces):
            problems.append(f"erasure: erased faces {sorted(self.erasure.receipt.get('face_ids', []))}, "
                            f"Bush's are {sorted(self.truth.bush_faces)}")
        problems += [f"server log: {line}" for line in self.server_problems]
        return problems

    @property
    def errors(self) -> int:
        return len(self.search_errors) + len(self.other_errors)

    def count(self, kind: str, window: str = "") -> int:
        return sum(1 for s in self.searches if s.kind == kind and (not window or s.window == window))

    def stats(self, name: str, label: str = "", searches: list[Search] | None = None,
              span: tuple[float, float] | None = None, rated: bool = True) -> PhaseStats:
        chosen = self.of_phase(name) if searches is None else searches
        start, end = span or self.phases[name]
        done = [s.latency * 1000 for s in chosen if s.status is not None]
        values = np.asarray(done or [float("nan")])
        p50, p95, p99 = (float(v) for v in np.percentile(values, [50, 95, 99]))
        return PhaseStats(label or name, end - start, len(chosen), sum(1 for s in chosen if s.problem), p50, p95,
                          p99, float(values.max()), rated)


# -- the machine ---------------------------------------------------------------------------------------------
def machine() -> dict[str, str]:
    """CPU model, cores and memory from /proc, with the Python and facetrail revision that ran."""
    info = {"cpu": "unknown", "cores": str(os.cpu_count() or "?"), "memory": "unknown",
            "python": sys.version.split()[0], "revision": "unknown"}
    with contextlib.suppress(OSError):
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        info["cpu"] = found.group(1).strip() if found else info["cpu"]
    with contextlib.suppress(OSError):
        found = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.MULTILINE)
        info["memory"] = f"{int(found.group(1)) / 1024 ** 2:.1f} GiB" if found else info["memory"]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, timeout=10)
        info["revision"] = out.stdout.strip() or info["revision"]
    return info


# -- the command line, the server --------------------------------------------------------------------------
def _env() -> dict[str, str]:
    """The environment of facetrail's processes: the data directory comes from --data, mail goes to the
    outbox (where the requester's code is read), and the API's rate limits are off unless set here: every
    searcher shares one loopback address and one key, and the test measures capacity, not the limiter."""
    env = {k: v for k, v in os.environ.items() if k not in ("FACETRAIL_DATA", "FACETRAIL_SMTP_HOST")}
    for name in RATE_LIMITS:
        env.setdefault(name, "0")
    return env


def facetrail_command(data: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "facetrail.cli", "--data", str(data), *args]


def cli(data: Path, *args: str, timeout: float = 900) -> Any:
    """Run `facetrail ... --json` and return what it printed."""
    proc = subprocess.run([*facetrail_command(data, *args), "--json"], capture_output=True, text=True,
                          env=_env(), timeout=timeout)
    if proc.returncode != 0:
        raise LoadTestError(f"facetrail {' '.join(args[:2])} exited {proc.returncode}: "
                            f"{(proc.stderr or proc.stdout)[-2000:]}")
    return json.loads(proc.stdout)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    exit_code: int | None = None  # when it exited by itself, before the test stopped it

    def alive(self) -> bool:
        return self.process.poll() is None


@contextlib.contextmanager
def server(data: Path, log_path: Path, timeout: float = 180) -> Iterator[Server]:
    """`facetrail serve` on a free loopback port, once /health answers."""
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(facetrail_command(data, "serve", "--host", "127.0.0.1", "--port", str(port)),
                                stdout=log, stderr=subprocess.STDOUT, env=_env())
    handle = Server(f"http://127.0.0.1:{port}", proc)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise LoadTestError(f"the server exited {proc.returncode}: {log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx2.HTTPError):
                if httpx2.get(f"{handle.url}/health", timeout=5).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise LoadTestError(f"the server did not answer /health within {timeout:.0f} s")
            time.sleep(0.25)
        yield handle
    finally:
        handle.exit_code = proc.poll()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server_problems(log_path: Path) -> list[str]:
    """Lines of the server's log that show a failure: tracebacks, errors, locked database, 5xx answers."""
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    return [line.strip()[:300] for line in text.splitlines() if SERVER_PROBLEM.search(line)]


# -- the data --------------------------------------------------------------------------------------------------
def labelled_people() -> dict[str, list[str]]:
    """File name -> the people labels.tsv names in it."""
    people: dict[str, list[str]] = {}
    for line in (SAMPLES / "labels.tsv").read_text().splitlines()[1:]:
        name, who = line.split("\t", 1)
        people[name] = re.findall(r"\b[a-z]+(?:_[a-z]+)+\b", who)
    return people


def photo_path(name: str) -> Path:
    """A sample photo, or an LFW photo by its file name."""
    sample = SAMPLES / name
    return sample if sample.exists() else LFW / name.rsplit("_", 1)[0] / name


def collection_people() -> dict[str, list[str]]:
    """The samples' labels, and Bush in his LFW photos (those held and the query)."""
    return {**labelled_people(), **{name: [BUSH] for name in (*BUSH_HELD, QUERIES["bush"])}}


def sample_files(people: dict[str, list[str]]) -> list[Path]:
    """The labelled photos of the collection but the query photos."""
    return [photo_path(name) for name in sorted(people) if name not in QUERIES.values()]


def lfw_files(count: int) -> list[Path]:
    """One photo each of `count` LFW people spread over the alphabet (none of the samples' people)."""
    if count <= 0:
        return []
    if not LFW.is_dir():
        raise LoadTestError(f"LFW is not at {LFW}")
    people = sorted(p for p in LFW.iterdir() if p.is_dir() and p.name not in LFW_EXCLUDED)
    chosen: list[Path] = []
    for person in people[::max(1, len(people) // count)]:
        photos = sorted(person.glob("*.jpg"))
        if photos:
            chosen.append(photos[0])
        if len(chosen) == count:
            break
    return chosen


def add_source(data: Path, name: str, description: str) -> int:
    source = cli(data, "source", "add", "--name", name, "--controller", "Load Test Agency", "--purpose", PURPOSE,
                 "--basis", "public_task", "--art9", "g", "--evidence", "load test", "--jurisdiction", "US",
                 "--retention-days", "365", "--description", description)
    return int(source["id"])


@dataclass(frozen=True)
class Prepared:
    samples_ingested: int
    lfw_source: int
    investigator_key: str
    dpo_key: str


def prepare(data: Path, people: dict[str, list[str]]) -> Prepared:
    """A data directory, sources, the sample photos and two accounts, all through the command line."""
    cli(data, "init")
    samples = add_source(data, "samples", "the sample photos")
    report = cli(data, "ingest", "--source", str(samples), *map(str, sample_files(people)))
    if report["errors"] or report["images_added"] != len(sample_files(people)):
        raise LoadTestError(f"the samples did not ingest cleanly: {report}")
    lfw = add_source(data, "lfw", "LFW photos ingested during the load test")
    investigator = cli(data, "user", "add", "ivy", "--role", "investigator")["api_key"]
    dpo = cli(data, "user", "add", "dora", "--role", "dpo")["api_key"]
    return Prepared(report["images_added"], lfw, investigator, dpo)


def find_truth(url: str, key: str, people: dict[str, list[str]], timeout: float) -> Truth:
    """Bush's faces, as the erasure request will find them; then check that both queries work before load."""
    truth = Truth(people)
    with httpx2.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout) as client:
        found = _search(client, QUERIES["bush"], "LOAD-truth", min_band="strong", top=100)
        truth.bush_faces = frozenset(h.face_id for h in found if truth.shows(h.name, BUSH))
        expected = sum(1 for f in sample_files(people) if BUSH in people[f.name])
        if len(truth.bush_faces) != expected:
            raise LoadTestError(f"{QUERIES['bush']} finds {len(truth.bush_faces)} of Bush's {expected} faces")
        for kind, person in (("obama", OBAMA), ("bush", BUSH)):
            hits = _search(client, QUERIES[kind], "LOAD-check")
            if not hits or not truth.shows(hits[0].name, person):
                raise LoadTestError(f"{QUERIES[kind]} does not find {person} first: {hits[:3]}")
    return truth


def _search(client: httpx2.Client, photo: str, case: str, **form: Any) -> list[Hit]:
    response = client.post("/v1/search", files={"photo": (photo, photo_path(photo).read_bytes(), "image/jpeg")},
                           data={"purpose": PURPOSE, "case": case, **{k: str(v) for k, v in form.items()}})
    if response.status_code != 200:
        raise LoadTestError(f"search with {photo}: HTTP {response.status_code} {response.text[:500]}")
    return hits_of(response.json())


def hits_of(body: dict[str, Any]) -> list[Hit]:
    return [Hit(int(r["face_id"]), Path(r["original_name"]).name, r["band"]) for r in body["results"]]


# -- the searchers -------------------------------------------------------------------------------------------
class Searchers:
    """`count` threads, each with its own connection, sending Obama and Bush queries in turn."""

    def __init__(self, url: str, key: str, count: int, phase: str, timeout: float) -> None:
        self.url, self.key, self.phase, self.timeout = url, key, phase, timeout
        self.photos = {kind: photo_path(name).read_bytes() for kind, name in QUERIES.items()}
        self.results: list[Search] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(count)]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> list[Search]:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        return self.results

    def count(self, wanted: Callable[[Search], bool]) -> int:
        with self._lock:
            return sum(1 for s in self.results if wanted(s))

    def _run(self, index: int) -> None:
        kinds = ("obama", "bush") if index % 2 == 0 else ("bush", "obama")
        headers = {"Authorization": f"Bearer {self.key}"}
        with httpx2.Client(base_url=self.url, headers=headers, timeout=self.timeout) as client:
            n = 0
            while not self._stop.is_set():
                search = self._one(client, index, kinds[n % 2])
                n += 1
                with self._lock:
                    self.results.append(search)

    def _one(self, client: httpx2.Client, index: int, kind: str) -> Search:
        name = QUERIES[kind]
        start = time.monotonic()
        search = Search(self.phase, kind, index, start, start)
        try:
            response = client.post("/v1/search", files={"photo": (name, self.photos[kind], "image/jpeg")},
                                   data={"purpose": PURPOSE, "case": f"LOAD-{self.phase}-{index}"})
            search.end = time.monotonic()
            search.status = response.status_code
            if response.status_code == 200:
                search.hits = hits_of(response.json())
            else:
                search.error = f"HTTP {response.status_code}: {response.text[:300]}"
        except Exception as exc:  # every failure is counted; none stops the test
            search.end = time.monotonic()
            search.error = f"{type(exc).__name__}: {exc}"[:300]
            time.sleep(0.5)  # a server that is gone is not hammered
        return search


# -- what runs beside the searches -----------------------------------------------------------------------------
def run_ingestion(data: Path, source: int, job: Ingestion) -> None:
    """`facetrail ingest` of the LFW photos into their own source, as a separate process."""
    job.start = time.monotonic()
    try:
        job.process = subprocess.Popen([*facetrail_command(data, "ingest", "--source", str(source),
                                                           *map(str, job.files)), "--json"],
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
        out, err = job.process.communicate()
        job.end = time.monotonic()
        job.returncode = job.process.returncode
        if job.returncode != 0:
            job.error = f"exited {job.returncode}: {(err or out)[-1000:]}"
            return
        job.report = json.loads(out)
        if job.report["errors"]:
            job.error = f"{len(job.report['errors'])} file error(s): {job.report['errors'][:3]}"
    except Exception as exc:  # reported as an error of the load test
        job.end = job.end or time.monotonic()
        job.error = f"{type(exc).__name__}: {exc}"


def read_code(data: Path, to: str) -> str:
    """The confirmation code in the newest message to `to` in the outbox, as the requester reads it."""
    for path in sorted((data / "outbox").glob("*.eml"), reverse=True):
        message = email.message_from_bytes(path.read_bytes(), policy=default_policy)
        if not isinstance(message, EmailMessage) or message["To"] != to:
            continue
        body = message.get_body(("plain",))
        found = CODE.search(body.get_content() if body else "")
        if found:
            return found.group(1)
    raise LoadTestError(f"no code was mailed to {to}")


def _csrf(page: httpx2.Response) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    if not found:
        raise LoadTestError(f"{page.url}: no form with a CSRF token (HTTP {page.status_code})")
    return found.group(1)


def _capture(page: httpx2.Response) -> dict[str, Any]:
    """The live check's upload form, answered with a photo of Bush at each pose the page asks for."""
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    token = re.search(r'name="token" value="([^"]+)"', page.text)
    poses = re.findall(r'<li data-pose="(\w+)">', page.text)
    if not nonce or not token or not poses:
        raise LoadTestError(f"{page.url}: no live challenge on the page")
    used = dict.fromkeys(BUSH_POSES, 0)
    files = []
    for step, pose in enumerate(poses):
        name = BUSH_POSES[pose][used[pose]]
        used[pose] += 1
        files.append(("frames", (f"step{step}.jpg", photo_path(name).read_bytes(), "image/jpeg")))
    return {"data": {"token": token.group(1), "csrf": _csrf(page), "nonce": nonce.group(1),
                     "steps": [str(step) for step in range(len(poses))]}, "files": files}


def _expect(response: httpx2.Response, status: int, step: str, marker: str = "") -> httpx2.Response:
    if response.status_code != status or marker not in str(response.url):
        raise LoadTestError(f"{step}: HTTP {response.status_code} at {response.url}: {response.text[:500]}")
    return response


def run_erasure(url: str, dpo_key: str, data: Path, job: Erasure, delay: float, timeout: float) -> None:
    """Bush asks for erasure on the portal; the DPO requires a manual check and approves it, which erases."""
    time.sleep(delay)
    job.start = time.monotonic()
    try:
        with (httpx2.Client(base_url=url, timeout=timeout, follow_redirects=True) as portal,
              httpx2.Client(base_url=url, timeout=timeout, headers={"Authorization": f"Bearer {dpo_key}"}) as dpo):
            created = _expect(portal.post("/portal/requests", data={
                "kind": "erasure", "email": REQUESTER, "message": "Please erase every photo of me.",
                "csrf": _csrf(portal.get("/portal"))}), 201, "intake")
            link = re.search(r'id="status-link" href="([^"]+)"', created.text)
            if not link:
                raise LoadTestError("intake: no private status link on the page")
            status_url = urlsplit(html.unescape(link.group(1)))
            job.request_id = status_url.path.rsplit("/", 1)[1]
            token = parse_qs(status_url.query)["token"][0]
            base = f"/portal/requests/{job.request_id}"
            _expect(dpo.post(f"/v1/requests/{job.request_id}/manual-check"), 200, "manual check")
            page = portal.get(base, params={"token": token})
            _expect(portal.post(f"{base}/code", data={"token": token, "code": read_code(data, REQUESTER),
                                                      "csrf": _csrf(page)}), 200, "code", "note=code-ok")
            page = portal.get(base, params={"token": token})
            _expect(portal.post(f"{base}/capture", **_capture(page)), 200, "live check", "note=capture-ok")
            job.approve_start = time.monotonic()
            approved = _expect(dpo.post(f"/v1/requests/{job.request_id}/approve", json={
                "reason": "the live check's key frames show the man of the matched faces"}), 200, "approve").json()
            job.done = time.monotonic()
            job.status = approved["status"]
            job.receipt = (approved.get("answer") or {}).get("erasure_receipt") or {}
            public = _expect(portal.get(f"/portal/api/requests/{job.request_id}", params={"token": token}),
                             200, "status").json()
            if public["status"] != "completed":
                job.error = f"the portal says {public['status']}"
    except Exception as exc:  # reported as an error of the load test
        job.error = f"{type(exc).__name__}: {exc}"[:1000]


# -- the phases ------------------------------------------------------------------------------------------------
def baseline_phase(cfg: Config, srv: Server, key: str) -> tuple[list[Search], tuple[float, float]]:
    searchers = Searchers(srv.url, key, cfg.searchers, "baseline", cfg.request_timeout)
    start = time.monotonic()
    searchers.start()
    while time.monotonic() - start < cfg.seconds and srv.alive():
        time.sleep(0.2)
    results = searchers.stop()
    return results, (start, time.monotonic())


def loaded_phase(cfg: Config, srv: Server, data: Path, prepared: Prepared, ingestion: Ingestion,
                 erasure: Erasure) -> tuple[list[Search], tuple[float, float]]:
    """The searchers for at least `seconds`, and until the ingestion and the erasure are over and every
    searcher had time for a Bush query after the erasure."""
    url = srv.url
    searchers = Searchers(url, prepared.investigator_key, cfg.searchers, "load", cfg.request_timeout)
    delay = cfg.seconds / 4 if cfg.erasure_delay is None else cfg.erasure_delay
    start = time.monotonic()
    searchers.start()
    background = [
        threading.Thread(target=run_ingestion, args=(data, prepared.lfw_source, ingestion), daemon=True),
        threading.Thread(target=run_erasure, args=(url, prepared.dpo_key, data, erasure, delay, cfg.request_timeout),
                         daemon=True),
    ]
    for thread in background:
        thread.start()

    def after_erasure(s: Search) -> bool:
        return s.kind == "bush" and erasure.done is not None and s.start > erasure.done

    while True:
        elapsed = time.monotonic() - start
        busy = any(t.is_alive() for t in background)
        waiting = erasure.completed and searchers.count(after_erasure) < cfg.searchers
        if elapsed >= cfg.seconds and not busy and not waiting:
            break
        if elapsed >= cfg.max_seconds or not srv.alive():
            why = f"not finished after {cfg.max_seconds:.0f} s" if srv.alive() else "the server is gone"
            if ingestion.process is not None and ingestion.process.poll() is None:
                ingestion.process.kill()
                ingestion.error = f"{why}; killed"
            erasure.error = erasure.error or ("" if erasure.done else why)
            break
        time.sleep(0.2)
    results = searchers.stop()
    end = time.monotonic()
    for thread in background:
        thread.join(timeout=cfg.request_timeout)
    return results, (start, end)


def judge(search: Search, truth: Truth, erasure: Erasure) -> None:
    """Set what is wrong with a search's answer, if anything (errors are set by the searcher)."""
    if search.kind == "bush":
        if erasure.approve_start is None or search.end < erasure.approve_start:
            search.window = "before"
        elif erasure.done is not None and search.start > erasure.done:
            search.window = "after"
        else:
            search.window = "during"
    if search.error:
        return
    top = search.hits[0] if search.hits else None
    if search.kind == "obama":
        if top is None or not truth.shows(top.name, OBAMA) or top.face_id in truth.bush_faces:
            search.wrong = f"Obama query, first result {top}"
    elif search.window == "before":
        if top is None or top.face_id not in truth.bush_faces:
            search.wrong = f"Bush query before the erasure, first result {top}"
    elif search.window == "after":
        shown = [h for h in search.hits if h.band in SHOWN_BANDS
                 and (h.face_id in truth.bush_faces or truth.people.get(h.name) == [BUSH])]
        if shown:
            search.wrong = f"Bush query after the erasure returned his face(s) {shown}"


@contextlib.contextmanager
def _workdir(kept: Path | None) -> Iterator[Path]:
    if kept is not None:
        if kept.exists() and any(kept.iterdir()):
            raise LoadTestError(f"{kept} is not empty")
        kept.mkdir(parents=True, exist_ok=True)
        yield kept
        return
    with tempfile.TemporaryDirectory(prefix="facetrail-load-") as tmp:
        yield Path(tmp)


def run(cfg: Config, console: Console | None = None) -> LoadResult:
    """Set up, run both phases, judge every search; write the report when cfg.output is set."""
    console = console or Console(stderr=True)
    people = collection_people()
    started_at = datetime.now(UTC)
    with _workdir(cfg.workdir) as work:
        data, log_path = work / "data", work / "server.log"
        console.print(f"setting up {data}: sources, {len(sample_files(people))} sample photos, accounts")
        prepared = prepare(data, people)
        ingestion, erasure = Ingestion(lfw_files(cfg.lfw_images)), Erasure()
        with server(data, log_path) as srv:
            truth = find_truth(srv.url, prepared.investigator_key, people, cfg.request_timeout)
            console.print(f"server at {srv.url}; baseline: {cfg.searchers} searchers for {cfg.seconds:.0f} s")
            baseline, baseline_span = baseline_phase(cfg, srv, prepared.investigator_key)
            if srv.alive():
                console.print(f"under load: ingesting {len(ingestion.files)} LFW photos and erasing Bush")
                loaded, loaded_span = loaded_phase(cfg, srv, data, prepared, ingestion, erasure)
            else:
                loaded, loaded_span = [], (time.monotonic(), time.monotonic())
                ingestion.error = erasure.error = "not run: the server is gone"
        problems = server_problems(log_path)
    crashed = [] if srv.exit_code is None else [f"the server exited by itself with code {srv.exit_code}"]
    result = LoadResult(cfg, machine(), started_at, prepared.samples_ingested, baseline + loaded,
                        {"baseline": baseline_span, "load": loaded_span}, ingestion, erasure, truth, problems,
                        crashed)
    for search in result.searches:
        judge(search, truth, erasure)
    show(result, console)
    if cfg.output is not None:
        write_section(cfg.output, markdown(result))
        console.print(f"wrote the load section of {cfg.output}")
    return result


# -- the report ----------------------------------------------------------------------------------------------
def _rows(result: LoadResult) -> list[PhaseStats]:
    rows = [result.stats("baseline"), result.stats("load", "under load")]
    ing = result.ingestion
    if ing.end is not None:
        inside = [s for s in result.of_phase("load") if s.start >= ing.start and s.end <= ing.end]
        rows.append(result.stats("load", "- within the ingestion", inside, (ing.start, ing.end)))
    era = result.erasure
    if era.approve_start is not None and era.done is not None:
        overlapping = [s for s in result.of_phase("load") if s.end >= era.approve_start and s.start <= era.done]
        rows.append(result.stats("load", "- overlapping the erasure", overlapping, (era.approve_start, era.done),
                                 rated=False))
    return rows


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and not np.isnan(a) and not np.isnan(b) else "-"


def show(result: LoadResult, console: Console) -> None:
    table = Table("phase", "seconds", "requests", "errors", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms",
                  title=f"{result.config.searchers} searchers on loopback")
    rows = _rows(result)
    for r in rows:
        table.add_row(r.name, f"{r.duration:.1f}", str(r.requests), str(r.errors), r.rate,
                      f"{r.p50:.0f}", f"{r.p95:.0f}", f"{r.p99:.0f}", f"{r.max:.0f}")
    base, load = rows[0], rows[1]
    table.add_row("under load / baseline", "", "", "", _ratio(load.throughput, base.throughput),
                  _ratio(load.p50, base.p50), _ratio(load.p95, base.p95), _ratio(load.p99, base.p99),
                  _ratio(load.max, base.max))
    console.print(table)
    for line in _concurrent_lines(result) + _check_lines(result):
        console.print(line, highlight=False, markup=False)
    for search in result.search_errors[:10]:
        console.print(f"[red]search error[/] {search.phase} {search.kind}: {search.problem}", highlight=False)
    for problem in result.other_errors[:20]:
        console.print(f"[red]error[/] {problem}", highlight=False)
    colour = "green" if result.errors == 0 else "red"
    console.print(f"[{colour}]errors: {result.errors}[/]")


def _concurrent_lines(result: LoadResult) -> list[str]:
    load_start = result.phases["load"][0]
    ing, era = result.ingestion, result.erasure
    report = ing.report
    lines = []
    if ing.end is not None:
        lines.append(f"- ingestion: `facetrail ingest` of {len(ing.files)} LFW photos (one per person) into a second "
                     f"source, a separate process on the same data directory: {report.get('images_added', 0)} "
                     f"images and {report.get('faces_added', 0)} faces added, {len(report.get('errors', []))} file "
                     f"errors, from +{ing.start - load_start:.1f} s to +{ing.end - load_start:.1f} s "
                     f"({ing.end - ing.start:.1f} s, {len(ing.files) / max(ing.end - ing.start, 1e-9):.1f} "
                     f"images/s){' - ' + ing.error if ing.error else ''}")
    if era.start:
        receipt = era.receipt
        approve = (f"the DPO's approval, which erased, took {era.done - era.approve_start:.1f} s "
                   f"(+{era.approve_start - load_start:.1f} s to +{era.done - load_start:.1f} s)"
                   if era.done is not None and era.approve_start is not None else "the approval did not return")
        lines.append("- erasure: Bush's request through the portal (intake, e-mailed code, live check) and "
                     f"the DPO's API key (manual check, approval); the whole flow took "
                     f"{(era.done or era.start) - era.start:.1f} s; {approve}; request {era.status or 'failed'}: "
                     f"{receipt.get('faces_erased', 0)} faces erased ({len(result.truth.bush_faces)} expected), "
                     f"{receipt.get('images_redacted', 0)} images redacted, {receipt.get('images_deleted', 0)} "
                     f"deleted, {receipt.get('index_entries_removed', 0)} index entries removed"
                     f"{' - ' + era.error if era.error else ''}")
    return lines


def _check_lines(result: LoadResult) -> list[str]:
    return [
        f"- answers checked: {result.count('obama')} Obama queries (first result Obama's face); Bush queries: "
        f"{result.count('bush', 'before')} finished before the erasure began (first result his face), "
        f"{result.count('bush', 'during')} overlapping it (status only), {result.count('bush', 'after')} started "
        f"after it completed (none of his faces at 'possible' or above)",
        f"- server log: {len(result.server_problems)} tracebacks, errors, 5xx answers or 'database is locked'",
    ]


def markdown(result: LoadResult) -> str:
    cfg, m = result.config, result.machine
    rows = _rows(result)
    lines = [
        "## Concurrency: searches while an ingestion and an erasure run",
        "",
        "`make bench-load` (`.venv/bin/python -m bench.load --searchers N --seconds T --lfw-images K`) sets up a "
        f"temporary data directory with the command line ({result.samples_ingested} photos: the samples and three "
        "LFW photos of George W. Bush; the query photos obama2.jpg and George_W_Bush_0001.jpg are held out), "
        "starts `facetrail serve` on 127.0.0.1 and runs N "
        "searcher threads, each with its own HTTP connection, sending `POST /v1/search` with the Obama and the "
        "Bush query in turn, closed loop (the next search as soon as the answer arrives). Baseline: the "
        "searchers alone for T seconds. Under load: the same searchers, for at least T seconds and until both "
        "of these are over, while a `facetrail ingest` process adds K LFW photos to a second source of the same "
        "purpose (the searches reach them as they are committed) and George W. Bush's erasure request goes through "
        "the portal and the DPO's API key, so the erasure runs inside the server between the searches. The API's "
        "rate limits are off for the test (every searcher shares one address and one key). The rows marked - are "
        "parts of the loaded phase: the searches that began and ended while the ingestion ran, and those in "
        "flight during the DPO's approval, which erases.",
        "",
        "An error is any answer other than 200, any exception or timeout, and any wrong answer: an Obama query "
        "whose first result is not Obama's face, a Bush query finished before the erasure whose first result is "
        "not his face, or a Bush query started after the erasure that shows any of his faces; the ingestion "
        "failing, the erasure not completing or erasing other faces than his, and any traceback, 5xx or "
        "'database is locked' in the server's log count too. The machine is shared: compare the two phases of "
        "one run (the ratios), not runs.",
        "",
        f"Run on {result.started_at:%Y-%m-%d %H:%M} UTC, revision {m['revision']}, on {m['cpu']}, "
        f"{m['cores']} cores, {m['memory']} RAM, Python {m['python']}: N = {cfg.searchers} searchers, "
        f"T = {cfg.seconds:.0f} s, K = {len(result.ingestion.files)} LFW photos."
        + (f" {cfg.note}" if cfg.note else ""),
        "",
        "| phase | seconds | requests | errors | requests/s | p50 ms | p95 ms | p99 ms | max ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r.name} | {r.duration:.1f} | {r.requests} | {r.errors} | {r.rate} | "
                     f"{r.p50:.0f} | {r.p95:.0f} | {r.p99:.0f} | {r.max:.0f} |")
    base, load = rows[0], rows[1]
    lines += [f"| **under load / baseline** | | | | {_ratio(load.throughput, base.throughput)} | "
              f"{_ratio(load.p50, base.p50)} | {_ratio(load.p95, base.p95)} | {_ratio(load.p99, base.p99)} | "
              f"{_ratio(load.max, base.max)} |", "", "What ran beside the searches:", ""]
    lines += _concurrent_lines(result) + _check_lines(result)
    problems = [s.problem for s in result.search_errors[:5]] + result.other_errors[:5]
    lines += ["", f"**Errors: {result.errors}**" + (": " + "; ".join(problems) if problems else "")]
    return "\n".join(_wrapped(line) for line in lines) + "\n"


def _wrapped(line: str, width: int = 120) -> str:
    """Prose and list items folded to the width of the rest of BENCHMARKS.md; table rows left whole."""
    if line.startswith("|") or len(line) <= width:
        return line
    indent = "  " if line.startswith("- ") else ""
    return textwrap.fill(line, width, subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)


def percentile(values: Iterable[float], q: float) -> float:
    """The q-th percentile of the values; NaN when there are none."""
    data = list(values)
    return float(np.percentile(np.asarray(data, dtype=np.float64), q)) if data else float("nan")


@contextlib.contextmanager
def pipeline_env(pipeline: str) -> Iterator[None]:
    """FACETRAIL_VISION_MODEL for this process and the commands it starts (the helpers here pass os.environ on)."""
    before = os.environ.get("FACETRAIL_VISION_MODEL")
    os.environ["FACETRAIL_VISION_MODEL"] = pipeline
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("FACETRAIL_VISION_MODEL", None)
        else:
            os.environ["FACETRAIL_VISION_MODEL"] = before


def run_line(started: datetime, m: dict[str, str]) -> str:
    """The closing line of a benchmark section: when, which revision, on what machine."""
    return (f"Run on {started:%Y-%m-%d %H:%M} UTC, revision {m['revision']}, on {m['cpu']}, {m['cores']} cores, "
            f"{m['memory']}, Python {m['python']}; the machine was shared with other work, so the figures are noisy.")


def section(title: str, blocks: list[list[str]]) -> str:
    """A Markdown section: prose lines wrapped at 120 columns, table rows and blank lines kept as they are."""
    lines = [f"## {title}", ""]
    for block in blocks:
        lines += [line if line.startswith("|") or not line else textwrap.fill(line, 120, break_on_hyphens=False)
                  for line in block]
        lines.append("")
    return "\n".join(lines)


def write_section(path: Path, body: str, *, start: str = START, end: str = END) -> None:
    """Replace the section between the markers (the load test's by default), or append it; the rest of the file
    is left alone."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{body}{end}"
    if start in text and end in text and text.index(start) < text.index(end):
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + f"\n\n{block}\n"
    path.write_text(text)


def parse_args(argv: list[str] | None) -> Config:
    parser = argparse.ArgumentParser(prog="bench.load", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--searchers", type=int, default=Config.searchers, help="concurrent searchers (4)")
    parser.add_argument("--seconds", type=float, default=Config.seconds, help="seconds per phase, at least (30)")
    parser.add_argument("--lfw-images", type=int, default=Config.lfw_images,
                        help="LFW photos ingested during the loaded phase (300)")
    parser.add_argument("--output", type=Path, default=Config.output,
                        help="markdown file whose load section is written (BENCHMARKS.md)")
    parser.add_argument("--no-output", action="store_true", help="write no markdown")
    parser.add_argument("--erasure-delay", type=float, default=None,
                        help="seconds into the loaded phase before the erasure request (a quarter of --seconds)")
    parser.add_argument("--max-seconds", type=float, default=Config.max_seconds,
                        help="longest the loaded phase waits for the ingestion and the erasure (900)")
    parser.add_argument("--note", default="", help="a sentence added to the report about this run")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="set up in DIR (new or empty) and keep the data directory and server.log there")
    args = parser.parse_args(argv)
    if args.searchers < 1 or args.seconds <= 0 or args.lfw_images < 0:
        parser.error("--searchers must be at least 1, --seconds positive and --lfw-images at least 0")
    return Config(searchers=args.searchers, seconds=args.seconds, lfw_images=args.lfw_images,
                  output=None if args.no_output else args.output, erasure_delay=args.erasure_delay,
                  max_seconds=args.max_seconds, workdir=args.keep,
                  note=args.note)


def main(argv: list[str] | None = None) -> int:
    # Stopped (make, CI, a timeout): leave through the finally blocks, so the server is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    console = Console(stderr=True)
    if not console.is_terminal:
        console.width = 130
    try:
        result = run(parse_args(argv), console)
    except LoadTestError as exc:
        console.print(f"[red]load test failed:[/] {exc}", highlight=False)
        return 2
    return 1 if result.errors else 0


if __name__ == "__main__":
    sys.exit(main())
