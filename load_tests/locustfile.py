"""Locust load test for the HTTP API: `locust -f load_tests/locustfile.py --host http://127.0.0.1:3000`.

Images are generated in memory (no files needed): a 640x480 JPEG and 28x28 PNGs.
"""

from __future__ import annotations

import io
import random

import numpy as np
from locust import HttpUser, between, task
from PIL import Image


def _encode(pixels: np.ndarray, fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format=fmt)
    return buf.getvalue()


_RNG = np.random.default_rng(0)
PHOTO = _encode(_RNG.integers(0, 256, (480, 640, 3), dtype=np.uint8), "JPEG")
SMALL = [_encode(_RNG.integers(0, 256, (28, 28), dtype=np.uint8), "PNG") for _ in range(16)]


class VisionUser(HttpUser):
    wait_time = between(0.0, 0.05)

    @task(3)
    def classify_photo(self) -> None:
        self._classify(PHOTO, "classify photo")

    @task(1)
    def classify_small(self) -> None:
        self._classify(random.choice(SMALL), "classify 28x28")

    def _classify(self, data: bytes, name: str) -> None:
        files = {"image": ("image", data, "application/octet-stream")}
        with self.client.post("/classify", files=files, name=name, catch_response=True) as r:
            if r.status_code != 200 or not r.json().get("predictions"):
                r.failure(f"{r.status_code}: {r.text[:200]}")
