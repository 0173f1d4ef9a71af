# Every target installs what it needs into a project-local virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check -q
ORT_EXTRA ?= cpu            # `make serve ORT_EXTRA=gpu` for onnxruntime-gpu (CUDA provider)
export BENTOML_HOME ?= $(CURDIR)/.bentoml
export BENTOML_DO_NOT_TRACK := true
PORT ?= 3000

.PHONY: serve test bench lint format train-classifier train-detector export-detector train-instances train-segmenter train-segmenter-cpu \
	data-scenes import-models build clean protos image loadtest

$(PY):
	$(PYTHON) -m venv $(VENV)

# Serving: no torch.
$(VENV)/.serve: pyproject.toml | $(PY)
	$(PIP) install -e ".[$(strip $(ORT_EXTRA))]"
	touch $@

# torch + torchvision: the registry's CUDA build, which runs on CPU too. --isolated keeps pip
# from taking a machine-local CPU-only torch wheel that torchvision 0.28 cannot load.
$(VENV)/.torch: | $(PY)
	$(PIP) install --isolated "torch==2.13.0" "torchvision==0.28.0"
	$(PY) -c "import torchvision.ops"
	touch $@

# facenet-pytorch (MIT): its MTCNN weight files are what `export-face-detector` converts and
# its own MTCNN is the tests' reference; --no-deps because it pins old torch/numpy.
$(VENV)/.all: pyproject.toml $(VENV)/.torch
	$(PIP) install -e ".[$(strip $(ORT_EXTRA)),train,dev,load]"
	$(PIP) install --no-deps "facenet-pytorch==2.6.0"
	touch $(VENV)/.serve $@

serve: $(VENV)/.serve
	$(VENV)/bin/vision serve --port $(PORT)

import-models: $(VENV)/.serve
	$(VENV)/bin/vision import-models

test: $(VENV)/.all
	$(VENV)/bin/ruff check service training bench tests load_tests
	$(VENV)/bin/ruff format --check service training bench tests load_tests
	$(VENV)/bin/mypy service training bench
	$(VENV)/bin/pytest -q

lint: $(VENV)/.all
	$(VENV)/bin/ruff check service training bench tests load_tests
	$(VENV)/bin/ruff format --check service training bench tests load_tests
	$(VENV)/bin/mypy service training bench

format: $(VENV)/.all
	$(VENV)/bin/ruff check --fix service training bench tests load_tests
	$(VENV)/bin/ruff format service training bench tests load_tests

# The classifier (POST /classify), then the detector (POST /detect, a generated test scene;
# plot docs/bench_detect.png), then NMS, ..., the gallery and the protocols (REST vs gRPC typed vs
# gRPC OIP, plot docs/bench_protocols.png); each appends its section to docs/BENCHMARKS.md.
bench: $(VENV)/.all
	$(VENV)/bin/vision bench
	$(VENV)/bin/vision bench --model scenes-detector --concurrency 1,8,32 --modes on,off,local
	$(VENV)/bin/vision bench --model scenes-segmenter --concurrency 1,8,32 --modes on,off,local
	$(VENV)/bin/vision bench --model scenes-instances --concurrency 1,8,32 --modes on,off,local
	$(VENV)/bin/vision bench --model faces-embedder --concurrency 1,8,32 --modes on,off,local
	$(PY) -m bench.nms
	$(PY) -m bench.masks
	$(PY) -m bench.seg_output
	OPENBLAS_NUM_THREADS=1 $(PY) -m bench.gallery
	$(PY) -m bench.protocols

# The bundled default (model_store/fashion-classifier/model.json records this command).
TRAIN_CLASSIFIER_ARGS ?= --arch vgg --width 32 --depths 2,2 --dropout 0.3 --epochs 25 \
	--batch-size 128 --optimizer sgd --lr 0.1 --weight-decay 5e-4 --label-smoothing 0.1 \
	--warmup-epochs 1 --patience 8 --crop-padding 2 --hflip --seed 0 --threads 2 --bf16 \
	--version 1.0.0
train-classifier: $(VENV)/.all
	$(VENV)/bin/vision train-classifier $(TRAIN_CLASSIFIER_ARGS)

# The bundled detector (model_store/scenes-detector): the recorded command, on the scenes
# below. It was trained on a lent H100 in 402 s; on a 2-core CPU the same run takes hours.
SCENES_TRAIN := data/scenes-train/annotations.json
SCENES_TEST := data/scenes-test/annotations.json
TRAIN_DETECTOR_ARGS := --train $(SCENES_TRAIN) --test $(SCENES_TEST) --epochs 50 \
	--eval-every 10 --image-size 320 --widths 24,48,96,144,192 --depths 1,2,2,2 \
	--fpn-width 96 --head-convs 3 --batch-size 64 --bf16 --load-threads 16 \
	--name scenes-detector --version 1.0.0
WORKERS ?= $(shell nproc)

$(SCENES_TRAIN): | $(VENV)/.all
	$(VENV)/bin/vision data-scenes --out data/scenes-train --split train --num-images 10000 \
		--size 256-384 --seed 0 --workers $(WORKERS) --overwrite
$(SCENES_TEST): | $(VENV)/.all
	$(VENV)/bin/vision data-scenes --out data/scenes-test --split test --num-images 500 \
		--size 256-384 --seed 1 --workers $(WORKERS) --overwrite

data-scenes: $(SCENES_TRAIN) $(SCENES_TEST)

train-detector: $(VENV)/.all data-scenes
	$(VENV)/bin/vision train-detector $(TRAIN_DETECTOR_ARGS)

# Package runs/scenes-detector/best.pt again (export, parity, test mAP on this machine).
export-detector: $(VENV)/.all data-scenes
	$(VENV)/bin/vision export-detector --run-dir runs/scenes-detector

# The bundled face detector (model_store/faces-detector): MTCNN weights from the facenet-pytorch
# wheel (MIT) in our own networks (training/faces/detector/model.py), exported to ONNX with a parity check and
# measured on the sample photos. --no-deps: the wheel pins old torch/numpy; it is only read.
.PHONY: export-face-detector
export-face-detector: $(VENV)/.all
	$(VENV)/bin/vision export-face-detector --out model_store/faces-detector --canvas 576x576

# The bundled instance segmenter (model_store/scenes-instances): the recorded command. It
# trains on this 2-core CPU in under an hour (3,000 scenes at 256 px, bf16).
TRAIN_INSTANCES_ARGS := --train $(SCENES_TRAIN) --test $(SCENES_TEST) --limit 3000 \
	--image-size 256 --epochs 28 --eval-every 7 --batch-size 16 --bf16 --threads 2 \
	--load-threads 2 --name scenes-instances --version 1.0.0
train-instances: $(VENV)/.all data-scenes
	$(VENV)/bin/vision train-instances $(TRAIN_INSTANCES_ARGS)

# The bundled semantic segmenter (model_store/scenes-segmenter): the recorded command, trained
# from scratch on a lent H100 in 114 s (hours on a 2-core CPU).
TRAIN_SEGMENTER_ARGS := --train data/scenes-train --test data/scenes-test --epochs 30 \
	--eval-every 5 --image-size 320 --batch-size 64 --bf16 --load-threads 16 \
	--name scenes-segmenter --version 1.0.0
train-segmenter: $(VENV)/.all data-scenes
	$(VENV)/bin/vision train-segmenter $(TRAIN_SEGMENTER_ARGS)

# Without a GPU: the detector's backbone (runs/scenes-detector/best.pt) fine-tuned with the
# semantic decoder on this 2-core CPU in 25 min (test mIoU 0.545 vs the bundled 0.559).
DETECTOR_CHECKPOINT := runs/scenes-detector/best.pt
TRAIN_SEGMENTER_CPU_ARGS := --train data/scenes-train --test data/scenes-test --limit 8000 \
	--val-fraction 0.05 --image-size 320 --epochs 3 --eval-every 1 --batch-size 16 \
	--lr 1e-3 --warmup-epochs 0.3 --bf16 --threads 2 --load-threads 2 \
	--init-backbone $(DETECTOR_CHECKPOINT) --name scenes-segmenter-cpu --version 1.0.0
$(DETECTOR_CHECKPOINT):
	$(MAKE) train-detector
train-segmenter-cpu: $(VENV)/.all data-scenes $(DETECTOR_CHECKPOINT)
	$(VENV)/bin/vision train-segmenter $(TRAIN_SEGMENTER_CPU_ARGS)

# The gRPC modules (service/api/grpc/oip/oip_pb2*.py, service/api/grpc/vision_v1/vision_pb2*.py, committed) from
# our protos; grpcio-tools 1.81 (protobuf 6, what tritonclient needs). tests/unit/test_oip_proto.py
# and tests/unit/test_grpc_protos.py fail when they are stale.
PROTOS = service/api/grpc/oip/oip.proto service/api/grpc/vision_v1/vision.proto
protos: $(VENV)/.all
	$(PY) -m grpc_tools.protoc -I . --python_out=. --pyi_out=. --grpc_python_out=. $(PROTOS)

# Locust against the bundled models (a local server is started) or HOST=http://host:3000
# (gRPC users on its port 50051, or LOADTEST_ARGS="--grpc-host host:port"); writes the CSVs,
# Locust's HTML report, a PNG and a summary to docs/loadtest/ and appends the summary to
# docs/BENCHMARKS.md. LOADTEST_ARGS="--overload": far past capacity, checks the shedding.
LOADTEST_ARGS ?=
loadtest: $(VENV)/.all
	$(PY) -m load_tests.run $(if $(HOST),--host $(HOST)) $(LOADTEST_ARGS)

# The serving image (Dockerfile): docker when its engine answers, else buildah (root, vfs
# storage, chroot isolation, host network, docker format so HEALTHCHECK is kept). CPU variant:
# make image IMAGE_ARGS="--build-arg BASE=debian:bookworm-slim --build-arg ORT_EXTRA=cpu".
IMAGE ?= vision:latest
IMAGE_ARGS ?=
BUILDAH ?= buildah --storage-driver vfs
image:
	@if docker info >/dev/null 2>&1; then \
		docker build -t $(IMAGE) $(IMAGE_ARGS) . ; \
	else \
		$(BUILDAH) bud --format docker --isolation chroot --network host --layers=false \
			-t $(IMAGE) $(IMAGE_ARGS) . ; \
	fi

build: $(VENV)/.all import-models
	$(VENV)/bin/bentoml build

clean:
	rm -rf $(VENV) .bentoml .pytest_cache .mypy_cache .ruff_cache

# The bundled face embedder (model_store/faces-embedder): synthetic identities (train and test
# from different seeds, so no test identity is seen in training) plus skimage's lfw_subset faces
# as pseudo-identities; triplet loss with semi-hard negatives, trained on this 2-core CPU.
.PHONY: data-faces train-face-embedder
FACES_TRAIN := data/faces-train/landmarks.json
FACES_TEST := data/faces-test/landmarks.json
$(FACES_TRAIN): | $(VENV)/.all
	$(VENV)/bin/vision data-faces --out data/faces-train --identities 1200 \
		--images-per-identity 14 --seed 0 --size 112 --workers $(WORKERS)
$(FACES_TEST): | $(VENV)/.all
	$(VENV)/bin/vision data-faces --out data/faces-test --identities 200 \
		--images-per-identity 10 --seed 1 --size 112 --workers $(WORKERS)
data-faces: $(FACES_TRAIN) $(FACES_TEST)

TRAIN_FACE_EMBEDDER_ARGS := --data data/faces-train --test data/faces-test --lfw-subset \
	--loss triplet --margin 0.2 --epochs 24 --batch 32,4 --image-size 64 --dim 128 --bf16 \
	--seed 0 --threads 2 --name faces-embedder --version 1.0.0 --out model_store/faces-embedder
train-face-embedder: $(VENV)/.all data-faces
	$(VENV)/bin/vision train-face-embedder $(TRAIN_FACE_EMBEDDER_ARGS)
