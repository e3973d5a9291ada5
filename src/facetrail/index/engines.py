"""Which vector index engine serves a data directory (`index_engine` setting): the embedded FAISS index, or a
Milvus collection (milvus-lite under the data directory when no `milvus_uri` is set). Only the runtime calls it;
the rest of the code sees `IndexStore` and `VectorIndex` (base.py)."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

from facetrail.config import Settings
from facetrail.crypto.vault import Vault
from facetrail.errors import FacetrailError
from facetrail.fsutil import private_dir
from facetrail.index.base import IndexStore


def open_index_store(settings: Settings, vault: Vault, *, model_id: str, dim: int,
                     closing: ExitStack) -> IndexStore:
    """The index store of this model; a connection it opens is closed with `closing`."""
    if settings.index_engine == "milvus":
        try:
            from facetrail.index.milvus_index import MilvusStore, MilvusTuning
        except ImportError as exc:
            raise FacetrailError("index_engine = milvus needs pymilvus (pip install 'facetrail[distributed]')"
                                 ) from exc
        uri = settings.milvus_uri
        if uri is None:
            private_dir(settings.data / "index")
            uri = str(settings.data / "index" / "milvus-lite.db")
        store = MilvusStore(MilvusTuning(uri=uri, prefix=settings.milvus_collection_prefix,
                                         buckets=settings.milvus_partitions, index_type=settings.milvus_index_type,
                                         model_id=model_id,
                                         token=settings.milvus_token.get_secret_value()
                                         if settings.milvus_token else None),
                            dim, Path(settings.data / "index" / f"{model_id}.milvus.lock"))
        closing.callback(store.close)
        return store
    from facetrail.index.faiss_index import IndexTuning
    from facetrail.index.faiss_store import FaissStore

    return FaissStore(settings.data / "index" / f"{model_id}.ftindex", dim, vault, IndexTuning(
        approximate_above=settings.index_approximate_above, nprobe=settings.index_nprobe,
        probe_share=settings.index_probe_share, max_scanned=settings.index_max_scanned,
        search_threads=settings.index_search_threads, model_id=model_id))
