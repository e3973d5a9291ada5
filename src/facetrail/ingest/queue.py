"""Image analysis across machines: a job queue in Redis, read by `facetrail worker` processes.

The ingesting process stays the only writer: it pushes each image's bytes (with the vision settings) to the
list `facetrail:jobs` and commits the results as they come back, in submission order, exactly as with the local
pool (`JobQueue.analyse` has WorkerPool's contract). Redis holds plain lists (the reliable-queue pattern):

- a worker moves a job atomically (BLMOVE) from `facetrail:jobs` to its own processing list, and refreshes a
  heartbeat key that expires after its lease (`--lease`, 30 s) while it is alive;
- it pushes the result (the analysis, or the per-file error) to the batch's result list, then drops the job
  from its processing list;
- the writer, while it waits, puts back on the queue the jobs of every processing list whose worker's
  heartbeat has expired (a worker killed mid-job loses nothing). A job that has taken down workers
  `MAX_ATTEMPTS` times is reported as that file's error. A result that arrives twice is taken once, and the
  store's sha256 idempotency keeps the commit exactly-once in any case. A batch abandoned half-way (interrupted)
  takes its queued jobs back.

Jobs and results are pickled, and read back by an unpickler that builds only facetrail's own data classes,
enums and errors, numpy arrays and paths (`loads`): a forged entry can give a wrong result, never run code in
the writer or a worker. The results hold face templates in clear: Redis must be on a private network, with TLS
and an ACL account (rediss://user:password@host). Results are held only until the writer takes them; those of a
batch abandoned half-way are dropped (and a writer that died leaves them for a day at most).
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import enum
import io
import os
import pickle
import socket
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit, urlunsplit

from facetrail.errors import FacetrailError, MediaError, ModelUnavailableError
from facetrail.ingest.analysis import Analyzer, ImageAnalysis
from facetrail.ingest.report import cause_of
from facetrail.vision.backend import VisionConfig

Job = TypeVar("Job")
Outcome = ImageAnalysis | BaseException

# What a job or a result may be built of, besides facetrail's data classes, enums and errors.
_NUMPY = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
          ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
          ("numpy._core.multiarray", "scalar")}
_OTHERS = {("pathlib", "PosixPath"), ("pathlib", "PurePosixPath"), ("builtins", "set"), ("builtins", "frozenset"),
           ("builtins", "tuple"), ("builtins", "list"), ("builtins", "dict")}


class _Unpickler(pickle.Unpickler):
    """Builds nothing but plain data: no function can be reached, so no entry can run code when read."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _NUMPY or (module, name) in _OTHERS:
            return super().find_class(module, name)
        if module == "builtins":
            found = getattr(builtins, name, None)
            if isinstance(found, type) and issubclass(found, BaseException):
                return found
        elif module.startswith("facetrail."):
            found = super().find_class(module, name)
            if isinstance(found, type) and (dataclasses.is_dataclass(found) or issubclass(found, enum.Enum)
                                            or issubclass(found, BaseException)):
                return found
        raise pickle.UnpicklingError(f"a queue entry asks for {module}.{name}, which is not plain data")


def loads(raw: bytes) -> Any:
    """A job or a result read from Redis (see _Unpickler)."""
    return _Unpickler(io.BytesIO(raw)).load()


JOBS = "facetrail:jobs"
PROCESSING = "facetrail:processing:"  # + worker id: the job a worker holds
ALIVE = "facetrail:alive:"  # + worker id: its heartbeat, which expires when it stops refreshing it
RESULTS = "facetrail:results:"  # + batch id
BATCH = "facetrail:batch:"  # + batch id: exists while its writer waits for results
LEASE_S = 30  # a worker silent this long is taken for dead (dlib can hold the GIL, and so the heartbeat, seconds)
RESULT_TTL_S = 86_400
MAX_ATTEMPTS = 3
# A worker's answer, in one step: the result is kept only while its batch's writer waits for it (that of a batch
# abandoned meanwhile is dropped), and the job leaves the worker's processing list.
ANSWER = """
if redis.call('exists', KEYS[1]) == 1 then
  redis.call('lpush', KEYS[2], ARGV[1])
  redis.call('expire', KEYS[2], ARGV[2])
end
redis.call('lrem', KEYS[3], 1, ARGV[3])
return 1
"""


class QueueUnavailableError(FacetrailError):
    """The Redis server of the job queue cannot be reached."""


def redacted(url: str) -> str:
    """The URL without its password, to name it in messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


def connect(url: str) -> Any:
    """A Redis client for `url`, checked with a PING; QueueUnavailableError names the URL when it fails."""
    try:
        import redis
    except ImportError as exc:  # the optional extra is missing
        raise QueueUnavailableError("the job queue needs the Redis client: pip install 'facetrail[queue]'") from exc
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise QueueUnavailableError(f"cannot reach the job queue at {redacted(url)}: {exc}") from exc
    return client


@dataclass(frozen=True)
class _Task:
    batch: str
    seq: int
    config: VisionConfig
    data: bytes


class JobQueue(Generic[Job]):
    """The analysis step through Redis, with WorkerPool's `analyse` contract."""

    def __init__(self, url: str, config: VisionConfig, data: Callable[[Job], bytes], window: int = 32,
                 poll_s: float = 1.0, stopping: Callable[[], bool] = lambda: False) -> None:
        self.url = url
        self.stopping = stopping  # checked while waiting: a batch told to stop stops waiting for workers
        self.config = config
        self.data = data
        self.window = window
        self.poll_s = poll_s
        self.client = connect(url)

    def analyse(self, jobs: Iterator[Job]) -> Generator[tuple[Job, Outcome], None, None]:
        """Each job with its analysis (or the error that replaced it), in submission order."""
        batch = uuid.uuid4().hex
        results = RESULTS + batch
        waiting: dict[int, Job] = {}
        pushed: dict[int, bytes] = {}  # the jobs not answered yet, as queued: taken back if the batch is abandoned
        done: dict[int, Outcome] = {}
        attempts: dict[int, int] = {}
        next_out = 0
        seq = 0
        source = iter(jobs)
        exhausted = False
        self.client.set(BATCH + batch, "1", ex=RESULT_TTL_S)
        try:
            while not exhausted or waiting:
                while not exhausted and len(waiting) < self.window:
                    job = next(source, None)
                    if job is None:
                        exhausted = True
                        break
                    pushed[seq] = pickle.dumps(_Task(batch, seq, self.config, self.data(job)))
                    waiting[seq] = job
                    attempts[seq] = 1
                    self.client.lpush(JOBS, pushed[seq])
                    seq += 1
                while next_out in done:
                    pushed.pop(next_out, None)
                    yield waiting.pop(next_out), done.pop(next_out)
                    next_out += 1
                if not waiting or (not exhausted and len(waiting) < self.window):
                    continue
                reply = self.client.brpop([results], timeout=self.poll_s)
                if reply is None:
                    if self.stopping():
                        return
                    self._requeue_dead(batch, attempts, done, waiting)
                    continue
                got_seq, outcome = _load_result(reply[1])
                if got_seq in waiting and got_seq not in done:
                    done[got_seq] = outcome
        finally:
            # Abandoned half-way (interrupted, or the writer failed): no worker should start what is left.
            pipe = self.client.pipeline(transaction=False)
            for raw in pushed.values():
                pipe.lrem(JOBS, 1, raw)
            pipe.delete(BATCH + batch, results)
            pipe.execute()

    def _requeue_dead(self, batch: str, attempts: dict[int, int], done: dict[int, Outcome],
                      waiting: dict[Any, Any]) -> None:
        """Put back on the queue the jobs held by workers whose heartbeat has expired."""
        for key in self.client.scan_iter(match=PROCESSING + "*"):
            worker = key.decode()[len(PROCESSING):]
            if self.client.exists(ALIVE + worker):
                continue
            while (raw := self.client.rpop(key)) is not None:
                task: _Task = loads(raw)
                if task.batch != batch:
                    self.client.rpush(JOBS, raw)  # another writer's: it goes back as it was
                    continue
                if task.seq not in waiting or task.seq in done:
                    continue
                attempts[task.seq] += 1
                if attempts[task.seq] > MAX_ATTEMPTS:
                    done[task.seq] = MediaError(f"the analysis worker died on this file ({MAX_ATTEMPTS} times)")
                else:
                    self.client.rpush(JOBS, raw)  # the next job taken (workers take from the right)


def _load_result(raw: bytes) -> tuple[int, Outcome]:
    seq, kind, value = loads(raw)
    return seq, (value if kind == "ok" else MediaError(value))


class Worker:
    """`facetrail worker`: takes analysis jobs from the queue until stopped."""

    def __init__(self, url: str, poll_s: float = 1.0, lease_s: int = LEASE_S) -> None:
        self.client = connect(url)
        self.lease_s = lease_s
        self.id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.poll_s = poll_s
        self._analyzers: dict[VisionConfig, Analyzer] = {}
        self._stop = threading.Event()
        self.jobs_done = 0

    def stop(self) -> None:
        self._stop.set()

    def run(self, max_jobs: int | None = None) -> None:
        alive, processing = ALIVE + self.id, PROCESSING + self.id
        beat = threading.Thread(target=self._beat, args=(alive,), name="heartbeat", daemon=True)
        self.client.set(alive, "1", ex=self.lease_s)
        beat.start()
        answer = self.client.register_script(ANSWER)
        try:
            while not self._stop.is_set() and (max_jobs is None or self.jobs_done < max_jobs):
                raw = self.client.blmove(JOBS, processing, self.poll_s, "RIGHT", "LEFT")
                if raw is None:
                    continue
                task: _Task = loads(raw)
                result = self._analyse(task)
                answer(keys=[BATCH + task.batch, RESULTS + task.batch, processing],
                       args=[pickle.dumps(result), RESULT_TTL_S, raw])
                self.jobs_done += 1
        finally:
            self._stop.set()
            with contextlib.suppress(Exception):
                # Stopped between jobs: anything still held goes back to the queue for another worker.
                while self.client.lmove(processing, JOBS, "RIGHT", "RIGHT") is not None:
                    pass
                self.client.delete(alive)

    def _analyse(self, task: _Task) -> tuple[int, str, Any]:
        analyzer = self._analyzers.get(task.config)
        if analyzer is None:
            analyzer = self._analyzers[task.config] = Analyzer(task.config)
        try:
            return task.seq, "ok", analyzer.analyze(task.data)
        except ModelUnavailableError:
            raise  # this machine's installation: the worker stops, and its job goes back for another worker
        except Exception as exc:  # one bad image must never stop the worker
            return task.seq, "error", cause_of(exc)

    def _beat(self, alive: str) -> None:
        while not self._stop.wait(min(1.0, self.lease_s / 5)):
            with contextlib.suppress(Exception):
                self.client.set(alive, "1", ex=self.lease_s)


def wait_for_workers(url: str, timeout_s: float, count: int = 1) -> int:
    """How many workers are alive on the queue at `url` (waiting up to `timeout_s` for at least `count`)."""
    client = connect(url)
    deadline = time.monotonic() + timeout_s
    while True:
        alive = sum(1 for _ in client.scan_iter(match=ALIVE + "*"))
        if alive >= count or time.monotonic() >= deadline:
            return alive
        time.sleep(0.2)
