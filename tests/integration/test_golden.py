"""Golden answers of every bundled model over every protocol, against a real server.

For each case (a bundled model, an image from an installed package or a seeded generated scene,
and request parameters) the server is asked over REST, the typed gRPC API (`vision.v1`) and the
Open Inference Protocol (gRPC and `/v2` REST, through tritonclient), and every answer must equal
the recorded one in `tests/golden/answers.json` (all but `timing_ms`, whose stage names are
compared). The annotated images are compared by the digest of their pixels; the gallery's
enrol, identify and verify answers (face ids aside) and the model list are recorded too.

The file was recorded before the restructure that made every protocol serialise the typed
results itself (issue 15), when the OIP tensors were made from the REST JSON: its OIP boxes and
landmarks are rounded as REST rounds them (3 decimals for objects, 2 for faces) and its
segmentation `mask` is a PNG. So OIP boxes and landmarks are compared within that rounding (the
protocol now carries them at full precision, which the test also checks), and a PNG mask is
decoded and compared with the uint8 label map the protocol now answers.
`GOLDEN_RECORD=1 pytest tests/integration/test_golden.py` rewrites the file (after a deliberate
change of a model or an answer; say why in the commit).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from google.protobuf.json_format import MessageToDict
from PIL import Image

from service.api.grpc.vision_v1 import vision_pb2 as pb
from service.api.grpc.vision_v1 import vision_pb2_grpc
from tests.conftest import Server, encode, start_server, stop_server
from tests.faces_fixture import photo

tc_grpc = pytest.importorskip("tritonclient.grpc")
tc_http = pytest.importorskip("tritonclient.http")

pytestmark = pytest.mark.slow

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "answers.json"
RECORD = os.environ.get("GOLDEN_RECORD") == "1"
FLOAT_TOLERANCE = 1e-6
FLOAT32_STEP = 2.0**-23
# REST rounds object boxes to 3 decimals and face boxes and landmarks to 2
OBJECT_ROUNDING, FACE_ROUNDING = 5e-4 + FLOAT_TOLERANCE, 5e-3 + FLOAT_TOLERANCE


@dataclass(frozen=True)
class Case:
    model: str
    path: str  # the REST route
    rpc: str  # its vision.v1 twin
    image: str  # an image of `images()`
    params: tuple[tuple[str, Any], ...] = ()
    annotate: bool = False  # also ask for the annotated PNG

    @property
    def id(self) -> str:
        extra = "-".join(f"{k}={v}" for k, v in self.params)
        return f"{self.model}/{self.image}" + (f"/{extra}" if extra else "")


CASES = (
    Case("fashion-classifier", "/classify", "Classify", "chelsea.jpg"),
    Case("fashion-classifier", "/classify", "Classify", "coffee.png", (("top_k", 3),)),
    Case("scenes-detector", "/detect", "Detect", "scene-0.jpg", annotate=True),
    Case(
        "scenes-detector",
        "/detect",
        "Detect",
        "scene-1.jpg",
        (("score_threshold", 0.05), ("iou_threshold", 0.3), ("max_detections", 7)),
    ),
    Case("scenes-detector", "/detect", "Detect", "astronaut.png", (("class_agnostic", True),)),
    Case("scenes-detector", "/detect", "Detect", "scene-2.png", (("classes", "Sneaker,Bag,0"),)),
    Case("scenes-segmenter", "/segment", "Segment", "scene-0.jpg", annotate=True),
    Case("scenes-segmenter", "/segment", "Segment", "rocket.png"),
    Case("scenes-instances", "/instances", "SegmentInstances", "scene-1.jpg", annotate=True),
    Case(
        "scenes-instances",
        "/instances",
        "SegmentInstances",
        "scene-2.png",
        (("score_threshold", 0.1), ("classes", "1,2,3,4,5")),
    ),
    Case("faces-detector", "/faces/detect", "DetectFaces", "astronaut.jpg", annotate=True),
    Case(
        "faces-detector",
        "/faces/detect",
        "DetectFaces",
        "grace_hopper.jpg",
        (("score_threshold", 0.5), ("min_face", 40)),
    ),
    Case("faces-embedder", "/faces/embed", "EmbedFaces", "astronaut.jpg"),
    Case("faces-embedder", "/faces/embed", "EmbedFaces", "grace_hopper.png"),
    Case(
        "faces-embedder", "/faces/embed", "EmbedFaces", "astronaut.jpg", (("detect_faces", False),)
    ),
)


@cache
def images() -> dict[str, bytes]:
    """The request images: photos from installed packages and seeded generated scenes."""
    from training.synth.scenes import SceneConfig, scenes

    out: dict[str, bytes] = {}
    for name in ("chelsea", "astronaut", "grace_hopper"):
        out[f"{name}.jpg"] = encode(photo(name), "JPEG", quality=90)
    for name in ("coffee", "astronaut", "rocket", "grace_hopper"):
        out[f"{name}.png"] = encode(photo(name), "PNG")
    config = SceneConfig(split="test", num_images=3, seed=7, height=(300, 420), width=(300, 420))
    for index, (scene, jpeg) in enumerate(scenes(config, range(3))):
        if index == 2:
            out[f"scene-{index}.png"] = encode(scene.image, "PNG")
        else:
            out[f"scene-{index}.jpg"] = jpeg
    return out


# ---- answers as JSON values ----


def without_timing(body: dict[str, Any]) -> dict[str, Any]:
    """The body with `timing_ms` replaced by its stage names (times vary run to run)."""
    out = dict(body)
    if "timing_ms" in out:
        out["timing_ms"] = sorted(out["timing_ms"])
    return out


def pixels_digest(data: bytes) -> dict[str, Any]:
    img = Image.open(io.BytesIO(data))
    array = np.asarray(img.convert("RGB"))
    return {"size": list(img.size), "sha256": hashlib.sha256(array.tobytes()).hexdigest()}


def bytes_value(item: bytes) -> str:
    try:
        return item.decode("utf-8")
    except UnicodeDecodeError:
        return "b64:" + base64.b64encode(item).decode()


def tensor_value(array: np.ndarray, datatype: str) -> dict[str, Any]:
    if datatype == "BYTES":
        data: list[Any] = [bytes_value(x) for x in array.reshape(-1)]
    else:
        data = array.reshape(-1).tolist()
    return {"datatype": datatype, "shape": list(array.shape), "data": data}


def oip_answer(result: Any, outputs: list[Any]) -> dict[str, Any]:
    answer = {}
    for output in outputs:
        name, datatype = output["name"], output["datatype"]
        array = result.as_numpy(name)
        if name == "json":  # each image's REST body, with its timings
            bodies = [without_timing(json.loads(x)) for x in array.reshape(-1)]
            answer[name] = {"datatype": datatype, "shape": list(array.shape), "data": bodies}
        else:
            answer[name] = tensor_value(array, datatype)
    return answer


# ---- the clients ----


@dataclass
class Clients:
    server: Server
    stub: Any
    oip_grpc: Any
    oip_http: Any


@pytest.fixture(scope="module")
def clients(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clients]:
    env = {"VISION_MAX_BATCH_WAIT_MS": "0"}  # every request its own batch
    server = start_server(tmp_path_factory.mktemp("golden"), env)
    channel = grpc.insecure_channel(f"127.0.0.1:{server.proc.grpc_port}")
    oip_grpc = tc_grpc.InferenceServerClient(f"127.0.0.1:{server.proc.grpc_port}")
    oip_http = tc_http.InferenceServerClient(f"127.0.0.1:{server.proc.port}")
    try:
        yield Clients(server, vision_pb2_grpc.VisionServiceStub(channel), oip_grpc, oip_http)
    finally:
        oip_grpc.close()
        oip_http.close()
        channel.close()
        stop_server(server)


def rest(clients: Clients, case: Case, **extra: str) -> Any:
    form = {k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in case.params}
    files = {"image": ("image", images()[case.image], "application/octet-stream")}
    response = clients.server.client.post(case.path, files=files, data={**form, **extra})
    assert response.status_code == 200, response.text
    return response


def grpc_request(case: Case) -> Any:
    request = getattr(pb, f"{case.rpc}Request")(image=images()[case.image])
    for key, value in case.params:
        if key == "classes":
            request.classes.extend(str(value).split(","))
        else:
            setattr(request, key, value)
    if "model" in request.DESCRIPTOR.fields_by_name:
        request.model = case.model
    return request


def oip_params(case: Case) -> dict[str, Any]:
    return dict(case.params)


def answers(clients: Clients, case: Case) -> dict[str, Any]:
    out: dict[str, Any] = {}
    model_field = {} if case.path.startswith("/faces/") else {"model": case.model}
    out["rest"] = without_timing(rest(clients, case, **model_field).json())
    if case.annotate:
        out["annotated"] = pixels_digest(rest(clients, case, format="png", **model_field).content)
    reply = getattr(clients.stub, case.rpc)(grpc_request(case), timeout=60)
    out["grpc"] = without_timing(MessageToDict(reply, preserving_proto_field_name=True))
    image = images()[case.image]
    metadata = clients.oip_http.get_model_metadata(case.model)
    for kind, client, module in (
        ("oip_grpc", clients.oip_grpc, tc_grpc),
        ("oip_http", clients.oip_http, tc_http),
    ):
        tensor = module.InferInput("IMAGE", [1], "BYTES")
        tensor.set_data_from_numpy(np.array([image], dtype=object))
        result = client.infer(case.model, [tensor], parameters=oip_params(case) or None)
        out[kind] = oip_answer(result, metadata["outputs"])
    return out


def gallery_answers(clients: Clients) -> dict[str, Any]:
    """Enrol one face, identify and verify against it (face ids are random: left out)."""
    http = clients.server.client
    data = images()

    def post(path: str, files: dict[str, bytes], **form: str) -> dict[str, Any]:
        parts = {k: (k, v, "application/octet-stream") for k, v in files.items()}
        response = http.post(path, files=parts, data=form)
        assert response.status_code == 200, response.text
        return without_timing(response.json())

    enrolled = post("/faces/enroll", {"image": data["astronaut.jpg"]}, subject="eileen")
    enrolled.pop("face_id")
    found = {}
    for name in ("astronaut.png", "grace_hopper.jpg"):
        body = post("/faces/identify", {"image": data[name]}, top_k="2")
        for face in body["faces"]:
            for match in face["matches"]:
                match.pop("face_id")
        found[name] = body
        reply = clients.stub.IdentifyFaces(pb.IdentifyFacesRequest(image=data[name], top_k=2))
        typed = without_timing(MessageToDict(reply, preserving_proto_field_name=True))
        for face in typed["faces"]:
            for match in face.get("matches", []):
                match.pop("face_id")
        found[f"grpc:{name}"] = typed
    verified = post(
        "/faces/verify", {"image_a": data["astronaut.jpg"], "image_b": data["grace_hopper.jpg"]}
    )
    by_subject = post("/faces/verify", {"image": data["astronaut.png"]}, subject="eileen")
    models = clients.server.client.get("/v1/models").json()
    listed = MessageToDict(
        clients.stub.ListModels(pb.ListModelsRequest()), preserving_proto_field_name=True
    )
    return {
        "enroll": enrolled,
        "identify": found,
        "verify": {"pair": verified, "subject": by_subject},
        "models": {"rest": models, "grpc": listed},
    }


# ---- comparison ----


def mismatches(
    expected: Any, got: Any, where: str, tolerance: float = FLOAT_TOLERANCE
) -> Iterator[str]:
    """Where `got` differs from `expected` (numbers within `tolerance`)."""
    if isinstance(expected, dict) and isinstance(got, dict):
        if set(expected) != set(got):
            yield f"{where}: keys {sorted(expected)} != {sorted(got)}"
            return
        for key in expected:
            yield from mismatches(expected[key], got[key], f"{where}.{key}", tolerance)
    elif isinstance(expected, list) and isinstance(got, list):
        if len(expected) != len(got):
            yield f"{where}: {len(expected)} items != {len(got)}"
            return
        for i, (e, g) in enumerate(zip(expected, got, strict=True)):
            yield from mismatches(e, g, f"{where}[{i}]", tolerance)
    elif isinstance(expected, bool) or isinstance(got, bool):
        if expected is not got:
            yield f"{where}: {expected!r} != {got!r}"
    elif isinstance(expected, int | float) and isinstance(got, int | float):
        limit = tolerance + FLOAT32_STEP * abs(expected)  # a float32 tensor's own rounding
        if not (np.isnan(expected) and np.isnan(got)) and abs(expected - got) > limit:
            yield f"{where}: {expected!r} != {got!r}"
    elif expected != got:
        yield f"{where}: {str(expected)[:80]!r} != {str(got)[:80]!r}"


def png_maps(tensor: dict[str, Any]) -> dict[str, Any]:
    """A recorded BYTES tensor of PNG label maps as the UINT8 [n, h, w] tensor of them."""
    maps = [np.asarray(Image.open(io.BytesIO(base64.b64decode(x[4:])))) for x in tensor["data"]]
    stacked = np.stack(maps)
    return {"datatype": "UINT8", "shape": list(stacked.shape), "data": stacked.ravel().tolist()}


def rounded_in_golden(expected: dict[str, Any]) -> bool:
    """Whether the recording's boxes went through the REST rounding (before issue 15)."""
    return expected["boxes"]["data"] == [round(v, 3) for v in expected["boxes"]["data"]]


def oip_mismatches(
    expected: dict[str, Any], got: dict[str, Any], where: str, faces: bool
) -> Iterator[str]:
    if set(expected) != set(got):
        yield f"{where}: outputs {sorted(expected)} != {sorted(got)}"
        return
    rounding = FACE_ROUNDING if faces else OBJECT_ROUNDING
    for name in expected:
        wanted = expected[name]
        if name == "mask" and wanted["datatype"] == "BYTES":
            wanted = png_maps(wanted)
        tolerance = rounding if name in ("boxes", "landmarks") else FLOAT_TOLERANCE
        yield from mismatches(wanted, got[name], f"{where}.{name}", tolerance)
    boxes = got.get("boxes", {}).get("data", [])
    fractional = any(abs(v - round(v)) > 1e-9 for v in boxes)  # whole numbers tell nothing
    if fractional and rounded_in_golden(expected) and boxes == [round(v, 3) for v in boxes]:
        yield f"{where}.boxes: rounded; the protocol carries full precision"


@pytest.fixture(scope="module")
def recorded(clients: Clients) -> Iterator[dict[str, Any]]:
    if not RECORD:
        yield json.loads(GOLDEN.read_text())
        return
    fresh: dict[str, Any] = {"cases": {}}
    yield fresh
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(fresh, indent=1, sort_keys=True) + "\n")


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_answers_equal_the_golden_ones(clients: Clients, recorded: dict, case: Case) -> None:
    got = answers(clients, case)
    if RECORD:
        recorded["cases"][case.id] = got
        return
    expected = recorded["cases"][case.id]
    problems = []
    for kind in ("rest", "annotated", "grpc"):
        if kind in expected or kind in got:
            problems += mismatches(expected.get(kind), got.get(kind), kind)
    for kind in ("oip_grpc", "oip_http"):
        problems += oip_mismatches(expected[kind], got[kind], kind, case.model.startswith("faces-"))
    assert not problems, "\n".join(problems[:20])


def test_gallery_answers_equal_the_golden_ones(clients: Clients, recorded: dict) -> None:
    got = gallery_answers(clients)
    if RECORD:
        recorded["gallery"] = got
        return
    problems = list(mismatches(recorded["gallery"], got, "gallery"))
    assert not problems, "\n".join(problems[:20])
