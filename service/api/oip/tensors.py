"""Tensors of the Open Inference Protocol as numpy arrays (no protobuf: shared by gRPC and REST).

Datatypes are the protocol's names (BOOL, UINT8 ... FP64, BYTES). Raw tensor bytes are
little-endian, row-major; a BYTES tensor is each element as a 4-byte little-endian length
followed by its bytes (the protocol's raw and binary-extension format).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from service.errors import InvalidParameter

NUMPY_BY_DATATYPE: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class Tensor:
    """A named tensor: numeric data as a numpy array of its datatype, BYTES as an object array
    of `bytes`."""

    name: str
    datatype: str
    data: np.ndarray

    @property
    def shape(self) -> list[int]:
        return [int(d) for d in self.data.shape]

    def raw(self) -> bytes:
        """The tensor's raw bytes (row-major, little-endian; BYTES length-prefixed)."""
        if self.datatype == "BYTES":
            return serialize_bytes(self.data.reshape(-1).tolist())
        return np.ascontiguousarray(self.data, NUMPY_BY_DATATYPE[self.datatype]).tobytes()


def serialize_bytes(items: Sequence[bytes]) -> bytes:
    return b"".join(_LENGTH.pack(len(item)) + item for item in items)


def deserialize_bytes(raw: bytes) -> list[bytes]:
    """The elements of a raw BYTES tensor; `invalid_parameter` when the lengths don't add up."""
    items: list[bytes] = []
    offset, size = 0, len(raw)
    view = memoryview(raw)
    while offset < size:
        if offset + 4 > size:
            raise InvalidParameter("BYTES tensor: a truncated 4-byte element length")
        (length,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + length > size:
            raise InvalidParameter(
                f"BYTES tensor: element {len(items)} claims {length} bytes, "
                f"{size - offset} are left"
            )
        items.append(bytes(view[offset : offset + length]))
        offset += length
    return items


def bytes_array(items: Sequence[bytes], shape: Sequence[int] | None = None) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = list(items)
    return array if shape is None else array.reshape(shape)


def element_count(shape: Sequence[int]) -> int:
    count = 1
    for dim in shape:
        if dim < 0:
            raise InvalidParameter(f"tensor shape {list(shape)}: dimensions must be >= 0")
        count *= dim
    return count


def image_batch(
    datatype: str, shape: Sequence[int], items: list[bytes], max_batch: int
) -> list[bytes]:
    """Check an image input tensor (BYTES, shape [n] or [n, 1], n elements) and return its
    elements: one encoded image per batch item."""
    if datatype != "BYTES":
        raise InvalidParameter(
            f"the image input must be BYTES (encoded images), got datatype {datatype!r}"
        )
    dims = list(shape)
    if len(dims) not in (1, 2) or (len(dims) == 2 and dims[1] != 1):
        raise InvalidParameter(f"the image input's shape must be [n] or [n, 1], got {dims}")
    count = element_count(dims)
    if count != len(items):
        raise InvalidParameter(f"shape {dims} holds {count} elements, the data {len(items)}")
    if count == 0:
        raise InvalidParameter("the image input is empty: send at least one encoded image")
    if count > max_batch:
        raise InvalidParameter(f"at most {max_batch} images per request, got {count}")
    return items
