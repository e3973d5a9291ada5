"""The distributed index: face templates in a Milvus collection, through pymilvus.

The same client talks to a Milvus cluster (`milvus_uri = http://host:19530`) and to milvus-lite: embedded (a local
directory path, one process; `make bench-scale-milvus`) or as a server that several processes share, as they share
a cluster (the tests' second stack, `make test-stack2`). Several data directories may share one server, each with
its own `milvus_collection_prefix`.

Layout. One collection per model, reached through an alias (`<prefix>_<model>`) so that a rebuild fills a new
collection and switches the alias when it is persisted whole. Rows: `id` (the face id, primary key), `source`
(its partition) and `vector`. Each source lives in a partition `b<source mod buckets>_<n>`: a search limited to
some sources names only their partitions (and filters on `source`), and a partition is rewritten or dropped
without touching the others.

Deletion. Milvus deletes by marking: the rows are hidden at once (every request runs at Strong consistency, so
no replica answers from before the delete), but their vectors stay in the segment files until a compaction
rewrites them. `remove` records the buckets it marked in the collection's properties (shared by every process)
before deleting; `purge` rewrites each such bucket into a new partition (the live rows only, read back from the
engine), then drops the old partition, whose files the engine deletes (milvus-lite at once; a cluster's garbage
collector after `dataCoord.gc.dropTolerance`, see docs/deployment.md). While a bucket is rewritten its rows are
in both partitions for a moment: searches drop the duplicates.

Vectors are in clear in the engine's memory and files: crypto-shredding does not reach them. Erasure there
rests on real deletion (purge above); the engine's volumes must be encrypted (docs/deployment.md).
"""

from __future__ import annotations

import fcntl
import re
import threading
import uuid
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pymilvus import DataType, MilvusClient, MilvusException

from facetrail.errors import FacetrailError, IndexCorruptError
from facetrail.fsutil import private_dir, private_opener
from facetrail.index.base import Hit, checked_batch

MAX_TOP_K = 16_384  # Milvus answers at most this many hits (and rows per query page)
PAGE = 4_096  # rows per page when reading ids or vectors back
INSERT_BATCH = 2_000
DIRTY = "facetrail.dirty"  # buckets with rows marked deleted, not yet rewritten: "3,17"
GENERATION = "facetrail.generation"  # the store generation persisted; -1 while changes are not persisted yet
MODEL = "facetrail.model"
STRONG = "Strong"
INDEX_PARAMS: dict[str, tuple[dict[str, int], dict[str, int]]] = {
    # index type: (build parameters, search parameters)
    "FLAT": ({}, {}),
    "IVF_FLAT": ({"nlist": 1024}, {"nprobe": 64}),
    "IVF_SQ8": ({"nlist": 1024}, {"nprobe": 64}),
    "HNSW": ({"M": 16, "efConstruction": 200}, {"ef": 128}),
}


@dataclass(frozen=True)
class MilvusTuning:
    """Where and how: the server (or milvus-lite directory), the collection name prefix, the number of source
    buckets (partitions), the vector index type (FLAT: exact; IVF_FLAT, IVF_SQ8, HNSW: approximate) and the model
    whose templates the collection holds (a collection made for another model is refused)."""

    uri: str
    prefix: str = "facetrail"
    buckets: int = 64
    index_type: str = "FLAT"
    model_id: str | None = None
    token: str | None = None


class MilvusIndex:
    """One model's templates in one Milvus collection (`VectorIndex`). Thread-safe; processes share the server."""

    def __init__(self, connection: Connection, collection: str, dim: int, tuning: MilvusTuning,
                 publish: Any = None, generation: int = 0, resolve: Any = None) -> None:
        self.connection = connection
        self.collection = collection
        self.dim = dim
        self.tuning = tuning
        self._publish = publish  # a rebuild's: called with its collection when persisted; the alias's collection
        self._generation = generation
        self._resolve = resolve  # the collection the alias names now (None: none)
        self._lock = threading.RLock()
        self._parts: dict[int, list[str]] | None = None  # bucket -> partition names, cached until a rewrite

    @property
    def client(self) -> MilvusClient:
        return self.connection.client

    # -- contents ----------------------------------------------------------------------------
    @property
    def generation(self) -> int:
        return self._generation

    def set_generation(self, generation: int) -> None:
        with self._lock:
            self._generation = generation

    def __len__(self) -> int:
        """The rows in the engine (for a moment, while a purge rewrites a bucket, its rows count twice)."""
        rows = self.client.query(self.collection, filter="", output_fields=["count(*)"], consistency_level=STRONG)
        return int(rows[0]["count(*)"]) if rows else 0

    def ids(self) -> NDArray[np.int64]:
        found = [int(row["id"]) for batch in self._pages(["id"]) for row in batch]
        return np.unique(np.asarray(found, dtype=np.int64))  # unique: a bucket being rewritten holds rows twice

    def add(self, ids: NDArray[np.int64], vectors: NDArray[np.float32], partitions: NDArray[np.int64]) -> None:
        if len(ids) == 0:
            return
        ids, vectors, partitions = checked_batch(ids, vectors, partitions, self.dim)
        with self._lock:
            self._mark_unpersisted()
            if self.remove(ids.tolist()):  # an id already present is replaced, in whichever partition it was
                # Flushed before the new rows go in: milvus-lite otherwise lets a re-inserted id bring its deleted
                # row back in partition-scoped reads (tests/index/test_engines.py shows it).
                self.client.flush(self.collection)
            for bucket in np.unique(partitions % self.tuning.buckets):
                rows = np.flatnonzero(partitions % self.tuning.buckets == bucket)
                partition = self._partition_for(int(bucket))
                for start in range(0, len(rows), INSERT_BATCH):
                    chunk = rows[start:start + INSERT_BATCH]
                    self.client.insert(self.collection, [
                        {"id": int(ids[i]), "source": int(partitions[i]), "vector": vectors[i].tolist()}
                        for i in chunk], partition_name=partition)

    def remove(self, ids: Collection[int]) -> int:
        wanted = sorted({int(i) for i in ids})
        if not wanted:
            return 0
        with self._lock:
            present: list[tuple[int, int]] = []
            for start in range(0, len(wanted), PAGE):
                chunk = wanted[start:start + PAGE]
                present += [(int(r["id"]), int(r["source"])) for r in self.client.query(
                    self.collection, filter=f"id in {chunk}", output_fields=["id", "source"],
                    consistency_level=STRONG)]
            if not present:
                return 0
            # Recorded before the delete: a crash in between leaves a bucket rewritten for nothing, never a
            # marked row whose bucket no purge would rewrite.
            self._mark_unpersisted(dirty={source % self.tuning.buckets for _, source in present})
            found = sorted({face for face, _ in present})
            for start in range(0, len(found), PAGE):
                self.client.delete(self.collection, ids=found[start:start + PAGE])
            return len(found)

    def count(self, partitions: Collection[int] | None = None) -> int:
        """Faces a search limited to these partitions reaches (while a purge rewrites a bucket its rows may
        count twice for a moment: the automatic threshold is then a little stricter, never looser)."""
        if partitions is None:
            return len(self)
        sources = sorted({int(p) for p in partitions})
        if not sources:
            return 0
        parts = self._partitions()
        names = [n for b in sorted({s % self.tuning.buckets for s in sources}) for n in parts.get(b, [])]
        if not names:
            return 0
        rows = self.client.query(self.collection, filter=f"source in {sources}", output_fields=["count(*)"],
                                 partition_names=names, consistency_level=STRONG)
        return int(rows[0]["count(*)"]) if rows else 0

    # -- search ------------------------------------------------------------------------------
    def search(self, vector: NDArray[np.float32], k: int,
               partitions: Collection[int] | None = None) -> list[Hit]:
        if k <= 0:
            return []
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(self.dim)
        names: list[str] | None = None
        expression = ""
        if partitions is not None:
            sources = sorted({int(p) for p in partitions})
            parts = self._partitions()
            names = [n for b in sorted({s % self.tuning.buckets for s in sources}) for n in parts.get(b, [])]
            if not names:
                return []
            expression = f"source in {sources}"
        limit = min(k, MAX_TOP_K)
        while True:
            hits = self._search_once(query, limit, names, expression)
            unique: dict[int, float] = {}
            for face, distance in hits:
                unique.setdefault(face, distance)  # nearest first: the first of a duplicated id is kept
            # Duplicates (a bucket being rewritten) can push true neighbours out: ask again for more, unless the
            # engine already gave all it holds.
            if len(unique) >= k or len(hits) < limit or limit >= MAX_TOP_K:
                break
            limit = min(MAX_TOP_K, 2 * limit)
        return [Hit(face_id=face, distance=float(np.sqrt(max(0.0, d)))) for face, d in unique.items()][:k]

    def _search_once(self, query: NDArray[np.float32], limit: int, names: list[str] | None,
                     expression: str) -> list[tuple[int, float]]:
        params = {"metric_type": "L2", "params": INDEX_PARAMS[self.tuning.index_type][1]}
        try:
            result = self.client.search(self.collection, data=[query.tolist()], limit=limit, filter=expression,
                                        partition_names=names, output_fields=["id"], search_params=params,
                                        consistency_level=STRONG)
        except MilvusException as exc:
            if names is not None and "partition" in str(exc).lower():
                self._parts = None  # another process rewrote a bucket meanwhile: look the partitions up again
                again = self._names_again(names)
                return self._search_once(query, limit, again, expression) if again else []
            raise
        # Milvus's L2 is the squared distance.
        return [(int(hit["id"]), float(hit["distance"])) for hit in result[0]]

    def _names_again(self, names: list[str]) -> list[str]:
        buckets = {_bucket_of(n) for n in names}
        parts = self._partitions()
        return [n for b in sorted(buckets) for n in parts.get(b, [])]

    # -- persistence -------------------------------------------------------------------------
    def persist(self) -> None:
        """Flush to the engine's segments and record the generation; a rebuilt collection takes the alias, unless
        another process published a rebuild of its own meanwhile (two processes that found no collection): this
        index then takes that one, which its process goes on using, and its own is dropped."""
        with self._lock:
            if self._publish is not None:
                current = self._publish(self.collection)
                self._publish = None
                if current != self.collection:
                    self._adopt(current)
            self.client.flush(self.collection)
            self._set_properties({GENERATION: str(self._generation)})

    def _adopt(self, name: str) -> None:
        """Use collection `name` from now on, at the generation it records (-1: the gallery compares ids)."""
        self.client.load_collection(name)  # loaded already by whoever built it: at once
        self.collection = name
        self._parts = None
        try:
            self._generation = int(self._properties().get(GENERATION, "-1"))
        except ValueError:
            self._generation = -1

    def purge(self) -> None:
        """Rewrite every bucket with rows marked deleted: its live rows go to a new partition, the old partition
        (and the files holding the deleted vectors) is dropped. Then persist."""
        with self._lock:
            for bucket in sorted(self._dirty()):
                self._rewrite(bucket)
                self._set_properties({DIRTY: ",".join(str(b) for b in sorted(self._dirty() - {bucket}))})
            self.persist()

    def refresh(self) -> int:
        """Changes from other processes: none to load, they share the engine (the gallery follows the store's
        generation for the rest), unless another process rebuilt the collection (`facetrail index rebuild`) and
        dropped this one: the index then follows the alias to the new one, at the generation it records (the
        gallery compares ids with the store when that is not the store's). Returns 1 then, else 0."""
        with self._lock:
            if self._resolve is None or self._publish is not None:  # a rebuild not published yet is not aliased
                return 0
            current = self._resolve()
            if current is None or current == self.collection:
                return 0
            self._adopt(current)
            return 1

    def settle(self) -> None:
        """Nothing runs in the background here: `purge` rewrites its buckets before it returns, and the buckets
        a purge cut short left marked are rewritten by the next purge (an erasure that resumes runs one)."""

    def _rewrite(self, bucket: int) -> None:
        old = self._partitions(fresh=True).get(bucket, [])
        if not old:
            return
        new = f"b{bucket}_{uuid.uuid4().hex[:12]}"
        self.client.create_partition(self.collection, new)
        seen: set[int] = set()  # after a crash mid-rewrite a row can be in two partitions: copied once
        for batch in self._pages(["id", "source", "vector"], partitions=old):
            rows = {int(r["id"]): r for r in batch if int(r["id"]) not in seen}
            seen.update(rows)
            for start in range(0, len(rows), INSERT_BATCH):
                chunk = list(rows.values())[start:start + INSERT_BATCH]
                self.client.insert(self.collection, [
                    {"id": int(r["id"]), "source": int(r["source"]), "vector": list(r["vector"])} for r in chunk],
                    partition_name=new)
        self.client.flush(self.collection)
        for name in old:
            self.client.drop_partition(self.collection, name)
        self._parts = None

    # -- helpers -----------------------------------------------------------------------------
    def _pages(self, fields: list[str], partitions: list[str] | None = None) -> Iterator[list[dict[str, Any]]]:
        iterator = self.client.query_iterator(self.collection, batch_size=PAGE, filter="id >= 0",
                                              output_fields=fields, partition_names=partitions,
                                              consistency_level=STRONG)
        try:
            while batch := iterator.next():
                yield batch
        finally:
            iterator.close()

    def _partitions(self, *, fresh: bool = False) -> dict[int, list[str]]:
        if self._parts is None or fresh:
            parts: dict[int, list[str]] = {}
            for name in self.client.list_partitions(self.collection):
                if re.fullmatch(r"b\d+_[0-9a-f]+", name):
                    parts.setdefault(_bucket_of(name), []).append(name)
            self._parts = parts
        return self._parts

    def _partition_for(self, bucket: int) -> str:
        names = self._partitions().get(bucket)
        if not names:
            names = self._partitions(fresh=True).get(bucket)
        if names:
            return sorted(names)[-1]
        name = f"b{bucket}_{uuid.uuid4().hex[:12]}"
        self.client.create_partition(self.collection, name)
        self._parts = None
        return name

    def _properties(self) -> dict[str, str]:
        return dict(self.client.describe_collection(self.collection).get("properties") or {})

    def _set_properties(self, values: dict[str, str]) -> None:
        self.client.alter_collection_properties(self.collection, properties=values)

    def _dirty(self) -> set[int]:
        raw = self._properties().get(DIRTY, "")
        return {int(b) for b in raw.split(",") if b}

    def _mark_unpersisted(self, dirty: set[int] | None = None) -> None:
        values = {GENERATION: "-1"}
        if dirty:
            values[DIRTY] = ",".join(str(b) for b in sorted(self._dirty() | dirty))
        self._set_properties(values)


def _bucket_of(partition: str) -> int:
    return int(partition[1:].split("_", 1)[0])


class Connection:
    """The client of one server, opened on first use and again after `close` (a data directory closed and then
    used again, as the gallery's last persist does)."""

    def __init__(self, tuning: MilvusTuning) -> None:
        self.tuning = tuning
        self._client: MilvusClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> MilvusClient:
        with self._lock:
            if self._client is None:
                try:
                    self._client = MilvusClient(uri=self.tuning.uri, token=self.tuning.token or "")
                except MilvusException as exc:
                    raise FacetrailError(f"cannot reach the Milvus server at {self.tuning.uri}: {exc}") from exc
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


class MilvusStore:
    """The `IndexStore` of the Milvus index: the collection behind the alias `<prefix>_<model>`."""

    def __init__(self, tuning: MilvusTuning, dim: int, lock_path: Path) -> None:
        if tuning.index_type not in INDEX_PARAMS:
            raise FacetrailError(f"unknown Milvus index type {tuning.index_type!r}; "
                                 f"one of {', '.join(INDEX_PARAMS)}")
        self.tuning = tuning
        self.dim = dim
        self.lock_path = lock_path
        self.alias = f"{tuning.prefix}_{re.sub(r'[^0-9A-Za-z_]', '_', tuning.model_id or 'model')}"
        self.connection = Connection(tuning)
        self.connection.client  # noqa: B018  # fail now, naming the server, when it cannot be reached
        # The collection the last `open` found (None: none): what a rebuild that follows it replaces, even when
        # another process has published one meanwhile ([] until the first `open`: the current one then).
        self._opened: list[str | None] = []

    @property
    def client(self) -> MilvusClient:
        return self.connection.client

    def close(self) -> None:
        self.connection.close()

    def _current(self) -> str | None:
        if not self.client.has_collection(self.alias):  # Milvus resolves an alias wherever a collection is named
            return None
        try:
            return str(self.client.describe_alias(self.alias)["collection_name"])
        except MilvusException:
            return None

    def open(self) -> MilvusIndex | None:
        name = self._current()
        self._opened = [name]
        if name is None:
            return None
        try:
            described = self.client.describe_collection(name)
        except MilvusException as exc:
            raise IndexCorruptError(f"the Milvus collection {name} cannot be described: {exc}") from exc
        properties = dict(described.get("properties") or {})
        dims = [f.get("params", {}).get("dim") for f in described.get("fields", []) if f.get("name") == "vector"]
        if not dims or int(dims[0]) != self.dim:
            raise IndexCorruptError(f"the Milvus collection {name} holds {dims[0] if dims else '?'}-d vectors, "
                                    f"the model needs {self.dim}-d")
        made_for = properties.get(MODEL)
        if self.tuning.model_id is not None and made_for != self.tuning.model_id:
            raise IndexCorruptError(f"the Milvus collection {name} holds templates of model {made_for!r}, "
                                    f"not of {self.tuning.model_id!r}")
        try:
            generation = int(properties.get(GENERATION, "-1"))
        except ValueError as exc:
            raise IndexCorruptError(f"the Milvus collection {name} has a damaged generation: {exc}") from exc
        self.client.load_collection(name)
        return MilvusIndex(self.connection, name, self.dim, self.tuning, generation=generation,
                           resolve=self._current)

    def create(self) -> MilvusIndex:
        name = f"{self.alias}_{uuid.uuid4().hex[:12]}"
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("source", DataType.INT64)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        build, _search = INDEX_PARAMS[self.tuning.index_type]
        params = self.client.prepare_index_params()
        params.add_index("vector", index_type=self.tuning.index_type, metric_type="L2", params=build)
        self.client.create_collection(name, schema=schema, index_params=params, consistency_level=STRONG,
                                      properties={MODEL: self.tuning.model_id or "", GENERATION: "-1", DIRTY: ""})
        self.client.load_collection(name)
        replaces = self._opened[0] if self._opened else self._current()
        self._opened = []
        return MilvusIndex(self.connection, name, self.dim, self.tuning,
                           publish=lambda built: self._publish(built, replaces), resolve=self._current)

    def _publish(self, name: str, replaces: str | None) -> str:
        """Point the alias at collection `name`, rebuilt to replace collection `replaces` (None: there was none),
        then drop that one (its files go with it); the collection the alias then names. Called under `writing`.
        When another process published its own rebuild meanwhile (the alias no longer names `replaces`), that
        one stays, being used, and `name` is dropped instead."""
        before = self._current()
        if before == name:
            return name
        if before is not None and before != replaces:
            self.client.drop_collection(name)
            return before
        if before is None:
            self.client.create_alias(name, self.alias)
        else:
            self.client.alter_alias(name, self.alias)
            self.client.drop_collection(before)
        return name

    @contextmanager
    def writing(self) -> Iterator[None]:
        """An exclusive lock (flock) beside the data directory's database: writers on one machine. Writers on
        several machines need a lock they share (docs/deployment.md)."""
        private_dir(self.lock_path.parent)
        with open(self.lock_path, "a+", opener=private_opener) as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def persisted_ids(self) -> set[int]:
        index = self.open()
        return set() if index is None else {int(i) for i in index.ids()}

    def unsafe_at_rest(self) -> str | None:
        return None  # the engine holds vectors in clear by design: its volumes are encrypted (docs/deployment.md)
