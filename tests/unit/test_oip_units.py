"""The Open Inference Protocol's pure parts: raw BYTES tensors, the image input's checks, padded
outputs from typed answers, and the REST twin's body handling (no server, no protobuf)."""

from __future__ import annotations

import gzip
import json
import zlib

import numpy as np
import pytest

from service.api import bodies
from service.api.oip.outputs import output_specs, to_tensors
from service.api.oip.tensors import (
    Tensor,
    bytes_array,
    deserialize_bytes,
    image_batch,
    serialize_bytes,
)
from service.api.rest.oip import InferRequest, _decompress, _split, infer_response, request_images
from service.errors import InvalidParameter, PayloadTooLarge
from service.pipeline.imaging import DecodedImage
from service.pipeline.package import ModelRef
from service.pipeline.run import Inference
from service.tasks.results import Detections, Faces, SegmentationMap


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


def _answer(result: object, width: int = 10, height: int = 8) -> Inference[object]:
    image = DecodedImage(np.zeros((height, width, 3), np.uint8), width, height, "PNG")
    return Inference(ModelRef("m", "v"), image, result, {"total": 1.0})


def _detections(boxes: list[list[float]]) -> Detections:
    n = len(boxes)
    return Detections(
        np.array(boxes, np.float32).reshape(n, 4),
        np.array([0.5 + i / 10 for i in range(n)], np.float32),
        np.arange(n, dtype=np.int64),
        ["c0", "c1", "c2"],
    )


def test_detections_of_a_batch_are_padded_and_counted() -> None:
    answers = [
        _answer(_detections([[1.0001, 2, 3, 4.123456], [5, 6, 7, 8]])),
        _answer(_detections([]), 20, 16),
    ]
    tensors = to_tensors("detection", answers, classes=3)
    assert tensors["count"].data.tolist() == [2, 0]
    assert tensors["boxes"].data.shape == (2, 2, 4)
    # full precision: the REST body rounds these boxes to 3 decimals, the tensor does not
    assert tensors["boxes"].data[0].tolist() == [
        [np.float32(1.0001), 2, 3, np.float32(4.123456)],
        [5, 6, 7, 8],
    ]
    assert tensors["boxes"].data[1].tolist() == [[0, 0, 0, 0], [0, 0, 0, 0]]
    assert tensors["class_ids"].data.tolist() == [[0, 1], [-1, -1]]
    assert tensors["labels"].data.tolist() == [[b"c0", b"c1"], [b"", b""]]
    assert tensors["scores"].data.dtype == np.float32
    assert tensors["image_size"].data.tolist() == [[10, 8], [20, 16]]
    assert [json.loads(b) for b in tensors["json"].data] == [bodies.inference(a) for a in answers]
    specs = {s.name: s for s in output_specs("detection", classes=3)}
    assert set(specs) == set(tensors)
    for name, tensor in tensors.items():
        assert tensor.datatype == specs[name].datatype
        assert len(tensor.shape) == len(specs[name].shape)


def test_label_maps_are_uint8_padded_to_the_largest_image() -> None:
    small = SegmentationMap(np.array([[1, 2]], np.uint8), ["bg", "a", "b"])
    large = SegmentationMap(np.full((2, 3), 2, np.uint8), ["bg", "a", "b"])
    tensors = to_tensors("segmentation", [_answer(small, 2, 1), _answer(large, 3, 2)], classes=3)
    mask = tensors["mask"]
    assert mask.datatype == "UINT8" and mask.data.dtype == np.uint8 and mask.shape == [2, 2, 3]
    assert mask.data[0].tolist() == [[1, 2, 0], [0, 0, 0]]  # its image_size says 2x1
    assert mask.data[1].tolist() == [[2, 2, 2], [2, 2, 2]]
    assert tensors["image_size"].data.tolist() == [[2, 1], [3, 2]]
    assert tensors["class_fractions"].data.tolist() == [[0, 0.5, 0.5], [0, 0, 1]]


def test_faces_without_landmarks_are_nan() -> None:
    faces = Faces(np.array([[0, 0, 2, 2]], np.float32), np.array([0.9], np.float32))
    embedded = faces.with_embeddings(np.array([[0.6, 0.8]]))
    tensors = to_tensors("face_embedding", [_answer(embedded, 4, 4)], classes=0)
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
