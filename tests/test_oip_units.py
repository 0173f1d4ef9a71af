"""The Open Inference Protocol's pure parts: raw BYTES tensors, the image input's checks, padded
outputs from REST bodies, and the REST twin's body handling (no server, no protobuf)."""

from __future__ import annotations

import gzip
import json
import zlib

import numpy as np
import pytest

from service.errors import InvalidParameter, PayloadTooLarge
from service.oip.outputs import output_specs, to_tensors
from service.oip.rest import InferRequest, _decompress, _split, infer_response, request_images
from service.oip.tensors import Tensor, bytes_array, deserialize_bytes, image_batch, serialize_bytes


def test_bytes_tensors_round_trip() -> None:
    items = [b"", b"\x00\x01", b"x" * 70_000]
    raw = serialize_bytes(items)
    assert raw[:4] == b"\x00\x00\x00\x00" and raw[4:8] == b"\x02\x00\x00\x00"  # little-endian
    assert deserialize_bytes(raw) == items
    assert Tensor("t", "BYTES", bytes_array(items)).raw() == raw


@pytest.mark.parametrize(
    "raw, message",
    [(b"\x05\x00\x00\x00abc", "claims 5 bytes"), (b"\x01\x00\x00\x00a\x01\x00", "truncated")],
)
def test_bad_bytes_tensors_are_refused(raw: bytes, message: str) -> None:
    with pytest.raises(InvalidParameter, match=message):
        deserialize_bytes(raw)


def test_numeric_raw_bytes_are_little_endian_row_major() -> None:
    data = np.arange(6, dtype=np.int32).reshape(2, 3)
    assert Tensor("t", "INT32", data).raw() == data.astype("<i4").tobytes(order="C")
    assert Tensor("t", "FP32", np.array([1.5], np.float32)).raw() == b"\x00\x00\xc0\x3f"


@pytest.mark.parametrize(
    "datatype, shape, count, message",
    [
        ("FP32", [1], 1, "must be BYTES"),
        ("BYTES", [1, 2], 2, r"\[n\] or \[n, 1\]"),
        ("BYTES", [2], 1, "holds 2 elements"),
        ("BYTES", [0], 0, "empty"),
        ("BYTES", [-1], 0, ">= 0"),
        ("BYTES", [5, 1], 5, "at most 4"),
    ],
)
def test_the_image_input_is_checked(
    datatype: str, shape: list[int], count: int, message: str
) -> None:
    with pytest.raises(InvalidParameter, match=message):
        image_batch(datatype, shape, [b"i"] * count, max_batch=4)
    assert image_batch("BYTES", [2, 1], [b"a", b"b"], max_batch=4) == [b"a", b"b"]


def _detect_body(boxes: list[list[float]], width: int = 10, height: int = 8) -> dict:
    return {
        "model": {"name": "m", "version": "v"},
        "image": {"width": width, "height": height},
        "timing_ms": {},
        "detections": [
            {"class_id": i, "label": f"c{i}", "score": 0.5 + i / 10, "box": box}
            for i, box in enumerate(boxes)
        ],
    }


def test_detections_of_a_batch_are_padded_and_counted() -> None:
    bodies = [_detect_body([[1, 2, 3, 4], [5, 6, 7, 8]]), _detect_body([], 20, 16)]
    tensors = to_tensors("detection", bodies, classes=3)
    assert tensors["count"].data.tolist() == [2, 0]
    assert tensors["boxes"].data.shape == (2, 2, 4)
    assert tensors["boxes"].data[0].tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert tensors["boxes"].data[1].tolist() == [[0, 0, 0, 0], [0, 0, 0, 0]]
    assert tensors["class_ids"].data.tolist() == [[0, 1], [-1, -1]]
    assert tensors["labels"].data.tolist() == [[b"c0", b"c1"], [b"", b""]]
    assert tensors["scores"].data.dtype == np.float32
    assert tensors["image_size"].data.tolist() == [[10, 8], [20, 16]]
    assert [json.loads(b) for b in tensors["json"].data] == bodies
    specs = {s.name: s for s in output_specs("detection", classes=3)}
    assert set(specs) == set(tensors)
    for name, tensor in tensors.items():
        assert tensor.datatype == specs[name].datatype
        assert len(tensor.shape) == len(specs[name].shape)


def test_faces_without_landmarks_are_nan() -> None:
    body = {
        "model": {"name": "m", "version": "v"},
        "image": {"width": 4, "height": 4},
        "faces": [
            {"box": [0, 0, 2, 2], "score": 0.9, "landmarks": None, "embedding": [0.6, 0.8]},
        ],
    }
    tensors = to_tensors("face_embedding", [body], classes=0)
    assert np.isnan(tensors["landmarks"].data).all() and tensors["landmarks"].shape == [1, 1, 5, 2]
    assert tensors["embeddings"].data.tolist() == [[[np.float32(0.6), np.float32(0.8)]]]


def test_compressed_bodies_are_inflated_with_a_limit() -> None:
    body = b'{"inputs": []}'
    assert _decompress(gzip.compress(body), "gzip", 1000) == body
    assert _decompress(zlib.compress(body), "deflate", 1000) == body
    bomb = gzip.compress(b"\x00" * 5_000_000)
    assert len(bomb) < 10_000
    with pytest.raises(PayloadTooLarge):
        _decompress(bomb, "gzip", 1_000_000)
    with pytest.raises(InvalidParameter, match="br"):
        _decompress(body, "br", 1000)
    with pytest.raises(InvalidParameter, match="inflated"):
        _decompress(b"not gzip", "gzip", 1000)


def test_binary_requests_are_split_and_checked() -> None:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "IMAGE",
                    "shape": [2],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": 16},
                }
            ]
        }
    ).encode()
    binary = serialize_bytes([b"abc", b"defgh"])
    head, rest = _split(header + binary, str(len(header)))
    request = InferRequest.model_validate_json(head)
    assert request_images(request, rest, max_batch=8) == [b"abc", b"defgh"]
    with pytest.raises(InvalidParameter, match="does not match"):
        request_images(request, rest + b"x", max_batch=8)
    with pytest.raises(InvalidParameter, match="outside the body"):
        _split(header, "0")


def test_outputs_go_back_binary_only_when_asked() -> None:
    tensors = [Tensor("scores", "FP32", np.array([[0.5, 0.25]], np.float32))]
    plain = InferRequest.model_validate({"inputs": []})
    response = infer_response("m", "v", plain, tensors)
    assert json.loads(bytes(response.body))["outputs"][0]["data"] == [0.5, 0.25]
    binary = InferRequest.model_validate({"inputs": [], "parameters": {"binary_data_output": True}})
    response = infer_response("m", "v", binary, tensors)
    size = int(response.headers["Inference-Header-Content-Length"])
    header = json.loads(bytes(response.body)[:size])
    assert header["outputs"][0]["parameters"] == {"binary_data_size": 8}
    assert np.frombuffer(bytes(response.body)[size:], "<f4").tolist() == [0.5, 0.25]
