"""Settings: one object, read from FACETRAIL_* environment variables, built by get_settings()."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can tune. Each field maps to FACETRAIL_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="FACETRAIL_", frozen=True)

    data: Path = Field(default=Path("facetrail-data"), description="data directory")
    detector: Literal["hog", "cnn"] = Field(default="hog", description="dlib's face detector (vision_model dlib)")
    # Upsampling lets the HOG detector (80 px window) see smaller faces: once, down to ~40 px, below
    # which templates are unreliable anyway. Each upsampling quadruples the pixels, so a photo is only
    # upsampled while the result stays under this budget: photos up to 1 MP once, larger ones not.
    # A photo where nothing is found is retried once more upsampled, then with the CNN detector.
    upsample_budget_pixels: int = Field(default=4_000_000, ge=100_000)
    max_upsample: int = Field(default=1, ge=0, le=3)
    max_image_pixels: int = Field(default=64_000_000, ge=1_000_000, description="decompression-bomb limit")
    max_file_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    max_zip_member_bytes: int = Field(default=100 * 1024 * 1024, ge=1024)
    max_zip_members: int = Field(default=10_000, ge=1, description="files per zip archive; a larger archive is "
                                 "refused whole (an error naming it), the rest of the batch goes on")
    detector_fallback: bool = Field(default=True, description="on a miss, retry upsampled, then with the CNN detector")
    jitters: int = Field(default=1, ge=1, le=100, description="test-time jitters per dlib template (slower, "
                        "steadier)")
    model: Path | None = Field(default=None, description="an ONNX embedding model file instead of dlib's encoder "
                               "(with the dlib pipeline, which it selects when vision_model is not set)")
    min_band: str = Field(default="auto", description="search results below this band are not shown by default; "
                          "auto: the threshold that keeps strangers out of all but target_fpir of searches at the "
                          "number of faces the search reaches")
    workers: int = Field(default=0, ge=0, description="images analysed at once (threads of one vision process for "
                                                       "the YuNet + Intel pipelines, a process each for dlib); "
                                                       "0 = one per core")
    item_time_limit_s: float = Field(default=300.0, gt=0, description="per-image analysis time limit (worker "
                                     "processes); an image over it is reported and its worker replaced")
    index_save_every: int = Field(default=500, ge=1, description="save the index after this many images")
    index_approximate_above: int = Field(default=300_000, ge=1, description="faces of one model above which the "
                                         "index is an inverted file (FAISS IVF, approximate); exact below")
    index_nprobe: int = Field(default=512, ge=1, description="inverted-file cells visited per search at least "
                              "(more: slower, fewer missed neighbours; see index_probe_share)")
    index_search_threads: int = Field(default=1, ge=0, description="FAISS threads per search; 0 = every core. "
                                      "More split an approximate search's cells among idle cores (faster at "
                                      "millions of faces on a machine that only searches, slower when the cores "
                                      "are busy)")
    store_images: bool = Field(default=True, description="keep the ingested image bytes for provenance")
    crop_size: int = Field(default=160, ge=32, le=512)
    manual_check: bool = Field(default=False, description="every rights request also needs a DPO's manual check")
    # Kinds answered without the DPO once the e-mail code and the live check passed; every other kind waits for
    # the DPO's judgement of the evidence. Their answers carry no counts (they would tell whether anyone is held).
    auto_approve: list[str] = Field(default_factory=lambda: ["erasure", "restriction", "opt-out"],
                                    description="request kinds approved without the DPO after the live check")
    challenge_seconds: int = Field(default=300, ge=30, le=3600, description="time to answer a live challenge")
    code_ttl_minutes: int = Field(default=30, ge=1, description="life of the e-mail code")
    package_ttl_days: int = Field(default=7, ge=1, description="life of an access package's download link")
    status_link_days: int = Field(default=90, ge=1, description="a request's private status link stops working "
                                  "this many days after the request closed")
    intake_per_hour: int = Field(default=10, ge=1, description="portal requests per e-mail and per IP per hour")
    # Access control of the API (accounts/, api/ratelimit.py, api/limits.py).
    key_ttl_days: int = Field(default=90, ge=0, le=36_500, description="life of a new API key; 0 = never expires")
    search_per_minute: int = Field(default=60, ge=0, description="searches per API key per minute; 0 = no limit")
    requests_per_minute_per_ip: int = Field(default=600, ge=0, description="API and portal requests per client "
                                            "address per minute; 0 = no limit")
    trusted_proxies: list[IPvAnyNetwork] = Field(default_factory=list, description="reverse proxies (addresses or "
                                                 "networks) whose X-Forwarded-For names the client")
    portal_url: str = Field(default="http://127.0.0.1:8000/portal", description="link sent to requesters")
    smtp_host: str | None = Field(default=None, description="send mail by SMTP; else into <data>/outbox")
    smtp_port: int = 587
    smtp_user: str | None = None
    smtp_password: str | None = None
    mail_from: str = "privacy@facetrail.invalid"
    erasure_batch: int = Field(default=200, ge=1, description="images per erasure step of an order, retention or "
                               "source retirement job (each step is finished on its own after a crash)")
    retention_interval_s: float = Field(default=3_600.0, ge=0, description="the server erases images past their "
                                        "source's retention this often (and once at start); 0 = never")
    console_folders: list[Path] = Field(default_factory=list, description="server folders (and those under them) "
                                        "the staff console may ingest from; none by default")
    # URL-list sources (sources/fetch.py): a polite, bounded fetcher of the declared URLs only.
    fetch_contact: str | None = Field(default=None, description="a URL or e-mail address for the sites fetched "
                                      "from, sent in the User-Agent (default: controller_contact; URL-list "
                                      "ingestion refuses to start without one)")
    fetch_delay_s: float = Field(default=1.0, ge=0, description="seconds between two requests to one host (a "
                                 "longer Crawl-delay in its robots.txt wins)")
    fetch_max_bytes: int = Field(default=50 * 1024 * 1024, ge=1024, description="largest response accepted")
    fetch_timeout_s: float = Field(default=30.0, gt=0, description="time limit of one request, body included")
    fetch_max_redirects: int = Field(default=5, ge=0, le=20, description="redirect hops followed (each checked)")
    fetch_allow_networks: list[IPvAnyNetwork] = Field(default_factory=list, description="private, loopback or "
                                                      "reserved networks URL-list ingestion may fetch from (e.g. "
                                                      "an intranet archive's); none by default")
    cluster_people: bool = Field(default=False, description="group new faces into people after each ingestion")
    # Encryption at rest (crypto/): where the master key comes from. Default: a 0600 key file in the data
    # directory, made with a new data directory; keep it (or a copy) apart from the backups.
    key_file: Path | None = Field(default=None, description="master key file; default <data>/keys/master.key")
    master_key: SecretStr | None = Field(default=None, description="the master key itself (base64 of 32 bytes)")
    kms: str | None = Field(default=None, description="a KMS hook, module:factory, that wraps data keys")
    # Signed audit checkpoints (audit/): the signing key lives outside the data directory (a file, the
    # environment, or the KMS hook when it can sign); without one no checkpoint can be made.
    audit_signing_key_file: Path | None = Field(default=None, description="checkpoint signing key file (0600)")
    audit_signing_key: SecretStr | None = Field(default=None, description="the checkpoint signing key itself")
    checkpoint_interval_s: float = Field(default=3600, ge=0, description="the server signs a checkpoint this "
                                       "often (and after each erasure); 0 = only after erasures")
    checkpoint_push_command: str | None = Field(default=None, description="a command each checkpoint the "
                                                "server makes is piped to (e.g. 'logger -t facetrail')")
    # Who answers for the processing: named in the record of processing (compliance/ropa.py) and the DPIA.
    controller_name: str | None = Field(default=None, description="the controller (organisation) named in the "
                                        "record of processing")
    controller_contact: str | None = Field(default=None, description="the controller's address and contact")
    representative: str | None = Field(default=None, description="the Art. 27 representative in the Union, "
                                       "name and contact (controllers established outside it)")
    dpo_contact: str | None = Field(default=None, description="the data protection officer's contact")
    # Bands at 1:N (search/reach.py): the automatic threshold's target false-positive identification rate.
    target_fpir: float = Field(default=0.01, gt=0, lt=0.5, description="share of searches for someone not enrolled "
                               "that may return anyone, with min_band auto (0.01: strangers kept out of 99%)")

    # The vector index engine (index/engines.py): the embedded FAISS index, or a Milvus collection (a cluster at
    # milvus_uri, or milvus-lite under the data directory when none is set; docs/deployment.md).
    index_engine: Literal["faiss", "milvus"] = Field(default="faiss", description="vector index engine")
    milvus_uri: str | None = Field(default=None, description="Milvus server (http://host:19530) or milvus-lite "
                                   "directory; default <data>/index/milvus-lite.db")
    milvus_token: SecretStr | None = Field(default=None, description="Milvus credentials (user:password or token)")
    milvus_collection_prefix: str = Field(default="facetrail", pattern=r"^[A-Za-z][0-9A-Za-z_]{0,63}$",
                                          description="collection alias prefix (one deployment per prefix)")
    milvus_partitions: int = Field(default=64, ge=1, le=1024, description="source buckets (Milvus partitions): "
                                   "a purge rewrites only the buckets that had deletions")
    milvus_index_type: Literal["FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW"] = Field(
        default="FLAT", description="Milvus vector index (FLAT: exact; the others approximate)")

    # Video ingestion (media/video.py, ingest/tracking.py): sampling, limits per file, and what a track keeps.
    video_sample_fps: float = Field(default=2.0, gt=0, le=60, description="frames analysed per second of video "
                                    "(plus the first frame of every shot)")
    video_scene_cut: float = Field(default=0.25, gt=0, le=1, description="frame-to-frame change (0-1) that "
                                   "starts a new shot")
    video_max_duration_s: float = Field(default=3600.0, gt=0, description="longest video accepted (seconds)")
    video_max_frames: int = Field(default=200_000, ge=1, description="most frames a video may have")
    video_max_pixels: int = Field(default=8_294_400, ge=10_000, description="largest video frame (pixels)")
    video_templates_per_track: int = Field(default=3, ge=1, le=20, description="templates kept per track: the "
                                           "best-quality face and others of varied pose")
    video_track_distance: float | None = Field(default=None, gt=0, description="template distance under which "
                                               "two faces of consecutive sampled frames continue one track "
                                               "(default: the vision model's calibrated 'probable' distance)")

    # Metadata store (store/db.py): SQLite in the data directory by default, or a PostgreSQL server. The data
    # directory still holds the keys, the blobs and the index whichever database holds the metadata.
    db_url: str | None = Field(default=None, description="SQLAlchemy URL of the metadata store, e.g. "
                               "postgresql://user@host/facetrail (default: <data>/facetrail.db, SQLite)")

    # Vision pipeline (vision/composite.py): the detector and recogniser. Each is its own template space with its
    # own calibration; after a change, `facetrail index reembed` re-embeds the stored faces with the new one.
    vision_model: Literal["dlib", "yunet-dlib", "yunet-intel", "yunet-n-intel"] = Field(
        default="yunet-intel", description="face detector + recogniser: yunet-intel (default), yunet-n-intel, dlib "
        "or yunet-dlib")

    # Blobs on S3-compatible object storage (store/s3.py): crops, images, selfies and packages as sealed objects in
    # a bucket instead of <data>/blobs. Credentials: these two, else the standard AWS environment variables.
    blob_url: str | None = Field(default=None, pattern=r"^s3://", description="where blobs are kept: "
                                 "s3://bucket/prefix (default: the data directory's blobs folder)")
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible endpoint, e.g. "
                                        "http://minio:9000 (default: AWS S3)")
    s3_access_key_id: str | None = Field(default=None, description="S3 access key id (default: AWS_ACCESS_KEY_ID)")
    s3_secret_access_key: SecretStr | None = Field(default=None, description="S3 secret access key (default: "
                                                   "AWS_SECRET_ACCESS_KEY)")
    s3_region: str | None = Field(default=None, description="S3 region (default: AWS_DEFAULT_REGION)")

    # Ingestion across machines (ingest/queue.py): the photos' analysis through a Redis job queue.
    queue_url: str | None = Field(default=None, description="Redis URL of the analysis job queue read by "
                                  "`facetrail worker` processes, e.g. rediss://user:pass@host:6379/0 (default: "
                                  "none, analysis in local worker processes)")

    # The embedded approximate index at scale (index/faiss_index.py, BENCHMARKS.md "Index at scale").
    index_probe_share: float = Field(default=0.5, gt=0, le=1, description="share of the inverted file's cells "
                                     "a search visits (at least index_nprobe; more: slower, fewer missed "
                                     "neighbours)")
    index_max_scanned: int = Field(default=1_600_000, ge=0, description="codes a search of the inverted file "
                                   "scans at most on average: fewer cells are visited once they hold more (keeps "
                                   "a search's time flat past about 3M faces; an inverted file trained for more "
                                   "faces than this / index_probe_share has compact codes, half the size, which "
                                   "count half; 0 = no limit)")

    @model_validator(mode="before")
    @classmethod
    def _onnx_model_goes_with_dlib(cls, data: Any) -> Any:
        """An ONNX embedder (`model`) runs behind dlib's detector: without an explicit vision_model, it selects
        the dlib pipeline (an explicit other pipeline is refused when the backend is loaded)."""
        if isinstance(data, dict) and data.get("model") and not data.get("vision_model"):
            return {**data, "vision_model": "dlib"}
        return data

    def worker_count(self) -> int:
        return self.workers or max(1, os.cpu_count() or 1)

    @property
    def master_key_file(self) -> Path:
        return self.key_file or self.data / "keys" / "master.key"

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data / 'facetrail.db'}"


def get_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (e.g. the CLI's --data) on top."""
    clean = {k: v for k, v in overrides.items() if v is not None}
    return Settings(**clean)  # type: ignore[arg-type]  # pydantic validates the values at run time
