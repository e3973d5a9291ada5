# facetrail: `make run` (demo) and `make test` do the whole set-up on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
PYTEST_ARGS ?=

.PHONY: install run test lint unit test-postgres clean bench-accuracy bench-load bench-zip bench-scale bench-fpir \
	bench-vision screenshots test-stack2 bench-scale-milvus bench-video bench-throughput bench-latency bench-serve-start

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,distributed,s3,queue]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

# Byte-compiled as a regular (non-editable) pip install is: an editable install leaves that to the first run, and
# where PYTHONDONTWRITEBYTECODE is set (as in many containers) every command would compile facetrail's modules
# again (0.2-0.3 s of `facetrail ingest`'s start, BENCHMARKS.md). Up-to-date files are skipped.
install: $(STAMP)
	$(BIN)/python -m compileall -q -j 0 src

run: install
	$(BIN)/facetrail demo

# lint-imports: the import contracts in pyproject.toml (layers of PRODUCT.md section 4, no cycles).
lint: install
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

# axe-core for the console's accessibility test (package-lock.json; test-only, nothing of it is served).
node_modules/.installed: package-lock.json
	if command -v npm >/dev/null; then npm ci --no-audit --no-fund --silent && touch $@; \
	else echo "npm not found: the console's accessibility test will be skipped" >&2; fi

unit: install node_modules/.installed
	$(BIN)/pytest $(PYTEST_ARGS)

# The second stack, as deployed across machines: the metadata on PostgreSQL (a throwaway server, Debian's
# `postgresql`, started by tests/pg.py on loopback), the vectors on a Milvus server (one milvus-lite gRPC server per
# run, tests/milvus.py, reached through FACETRAIL_MILVUS_URI by every process a test starts, as a cluster is; each
# data directory has its own database and its own collection prefix) and the queue tests' `facetrail worker`
# processes fed through a real redis-server. The store, gallery (the index tests that open data directories; the
# others drive each engine directly whatever the options, in make unit), ingestion, search, rights (erasure with
# its "no bytes left" checks, which scan the server's files of the test's collections), audit and compliance
# (orders, retention) suites; tests of the FAISS file itself skip (faiss_only). Tests marked slow run on the first
# stack only here (all of them: make test-stack2 STACK2_ARGS=). About 6 minutes on 2 cores (12 on a busy machine).
STACK2_SUITES := tests/store tests/index/test_gallery.py tests/index/test_milvus_server.py tests/ingest tests/search \
	tests/rights tests/audit tests/compliance/test_orders.py tests/compliance/test_retention.py
STACK2_ARGS ?= -m "not slow"
test-stack2: install
	$(BIN)/pytest --db postgres --index-engine milvus $(STACK2_SUITES) $(STACK2_ARGS) $(PYTEST_ARGS)

# The same suites on PostgreSQL with the embedded FAISS index (not part of make test: test-stack2 covers them).
PG_SUITES := tests/store tests/ingest tests/search tests/rights tests/audit tests/compliance/test_orders.py \
	tests/compliance/test_retention.py
PG_ARGS ?= -m "not slow"
test-postgres: install
	$(BIN)/pytest --db postgres $(PG_SUITES) $(PG_ARGS)

test: lint unit test-stack2

# Recognition quality on LFW (../shared/data/lfw) of the dlib pipeline, beside the face_recognition library's
# pipeline (the same dlib models); writes BENCHMARKS.md and dlib's calibration. About an hour on 2 cores; templates
# are cached. The default pipeline's figures and calibration come from bench-vision.
bench-accuracy: install
	$(BIN)/python -m pip install -q --no-deps face_recognition==1.3.0
	FACETRAIL_VISION_MODEL=dlib $(BIN)/facetrail bench accuracy --lfw ../shared/data/lfw --cache .bench-cache \
		--output BENCHMARKS.md --calibration-out src/facetrail/vision/calibrations/dlib-resnet-v1.json

# 1:N bands: FPIR against FNIR on LFW's open-set protocol at 700 (LFW only), 10k, 100k and 1M faces (synthetic
# distractors); writes the '1:N bands (FPIR/FNIR)' section of BENCHMARKS.md. About 10 minutes and 2 GB on 2 cores
# the first time (3,400 templates, cached in .bench-cache). Options: make bench-fpir FPIR_ARGS='--sizes 700,10000'
bench-fpir: install
	$(BIN)/facetrail bench fpir --lfw ../shared/data/lfw --cache .bench-cache --output BENCHMARKS.md $(FPIR_ARGS)

# Vision pipelines (detector + recogniser) on LFW and the sample photos; writes the "Vision pipelines" section of
# BENCHMARKS.md and each pipeline's calibration. dlib's LFW figures are cited from the accuracy section above
# (--measure-dlib runs it again: about an hour). The YuNet + Intel pipelines take minutes each on 2 cores.
bench-vision: install
	nice $(BIN)/facetrail bench accuracy --lfw ../shared/data/lfw --samples ../shared/data/samples \
		--pipeline dlib --pipeline yunet-intel --pipeline yunet-n-intel --pipeline yunet-dlib \
		--cache .bench-cache --output BENCHMARKS.md --calibrations src/facetrail/vision/calibrations $(VISION_ARGS)

# Concurrency on loopback: searchers through `facetrail serve`, alone and while a command-line ingestion of LFW
# photos and an erasure (portal + DPO API) run; writes the load section of BENCHMARKS.md, exits 1 on any error.
# About 3 minutes on 2 cores. Options: make bench-load LOAD_ARGS='--searchers 8 --seconds 60 --lfw-images 500'
bench-load: install
	$(BIN)/python -m bench.load --output BENCHMARKS.md $(LOAD_ARGS)

# The index at 10k and 100k faces beside FAISS flat, real LFW templates among synthetic ones (a few minutes; the LFW
# templates are cached in .bench-cache); 1M with make bench-scale SCALE_ARGS='--sizes 10000,100000,1000000'
# (about 5 minutes and 5.5 GB of memory); 10M with SCALE_ARGS='--sizes 10000,100000,1000000,10000000' (about
# 35 minutes, 16 GB of memory and 11 GB of disk under /tmp).
bench-scale: install
	$(BIN)/python -m bench.scale --output BENCHMARKS.md $(SCALE_ARGS)

# The distributed index (Milvus through pymilvus; here milvus-lite, the embedded build, not a cluster) at 10k and
# 100k faces beside FAISS flat: writes the "Distributed index (Milvus)" section of BENCHMARKS.md. A few minutes.
bench-scale-milvus: install
	$(BIN)/python -m bench.scale_milvus --output BENCHMARKS.md $(SCALE_MILVUS_ARGS)

# Zip ingestion time per member at 1k-20k members (linear: the ratio stays near 1); writes the zip section of
# BENCHMARKS.md, exits 1 when the per-member time grows more than 2x. About a minute on 2 cores.
bench-zip: install
	$(BIN)/python -m bench.zip_members --output BENCHMARKS.md $(ZIP_ARGS)

# Video ingestion speed on ../shared/data/videos: frames/s decoded and analysed, real-time factor per clip, and
# every frame of one clip analysed as the baseline; writes the video section of BENCHMARKS.md. About 2 minutes.
bench-video: install
	$(BIN)/python -m bench.video --output BENCHMARKS.md $(VIDEO_ARGS)

# A PNG of each staff console page (sample photos, requests, an order, a breach) in screenshots/ (git-ignored);
# needs Debian's Chromium at /usr/bin/chromium.
screenshots: install
	$(BIN)/python -m tests.web.screenshots screenshots

clean:
	rm -rf $(VENV) facetrail-demo .pytest_cache .mypy_cache .ruff_cache

# Ingestion images/s (dlib, yunet-intel) against the face_recognition peer on 2 processes, peak RSS of each process
# tree, per-stage timings, and search latency over HTTP; writes the "Ingestion throughput and search latency"
# section of BENCHMARKS.md. About 10 minutes on 2 cores. Options: THROUGHPUT_ARGS='--lfw-images 300 --long 1000,10000'
bench-throughput: install
	$(BIN)/python -m pip install -q --no-deps face_recognition==1.3.0
	nice $(BIN)/python -m bench.throughput --output BENCHMARKS.md $(THROUGHPUT_ARGS)

# Search latency over HTTP on 1M faces (the samples ingested, plus synthetic faces in the store, sealed, and in the
# index) beside the samples alone, and `serve`'s start-up on each; writes the "Search latency over HTTP at 1M faces"
# section of BENCHMARKS.md. About 10 minutes and 4 GB of disk on 2 cores. Options: LATENCY_ARGS='--faces 100000'
bench-latency: install
	nice $(BIN)/python -m bench.search_latency --output BENCHMARKS.md $(LATENCY_ARGS)

# `facetrail serve` start-up to its first /health answer with a 1M-face index, beside an empty one (3 starts each);
# writes the serve-start part of BENCHMARKS.md. A few minutes (building the 1M index). Options: SERVE_START_ARGS=
bench-serve-start: install
	nice $(BIN)/python -m bench.serve_start --faces 1000000 --runs 3 --output BENCHMARKS.md $(SERVE_START_ARGS)
