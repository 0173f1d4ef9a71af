"""Score a running service through HTTP, as a client sees it: every image of a set is posted
as a file to ``/detect``, ``/instances`` or ``/segment`` and the answers, in the original
image's pixels, are scored against the set's ground truth.

- boxes (``/detect``, ``/instances``) and masks (``/instances``: COCO RLE as returned) become
  COCO results for pycocotools (``training.common.coco_eval.score_results``);
- label maps (``/segment``: the base64 one-channel PNG) are decoded and compared pixel by pixel
  with the set's label PNGs (``training.segmentation.eval.segmentation_report``).

Any non-200 answer is an error: the evaluation does not skip images.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from training.common.coco_eval import EVAL_IOU_THRESHOLD, EVAL_MAX_DETECTIONS, EVAL_SCORE_THRESHOLD

Handle = Callable[[int, dict[str, Any]], None]  # (index of the file, JSON answer)

DETECT_FIELDS = {
    "score_threshold": str(EVAL_SCORE_THRESHOLD),
    "iou_threshold": str(EVAL_IOU_THRESHOLD),
    "max_detections": str(EVAL_MAX_DETECTIONS),
}


def post_all(
    url: str,
    endpoint: str,
    files: Sequence[Path],
    fields: dict[str, str],
    handle: Handle,
    *,
    concurrency: int = 8,
    timeout_s: float = 60.0,
) -> None:
    """POST every file (``image`` part) with ``fields``, ``concurrency`` in flight, and pass
    each JSON answer to ``handle``; a progress bar counts the answers."""
    import httpx
    from tqdm import tqdm

    async def run() -> None:
        gate = asyncio.Semaphore(max(1, concurrency))
        bar = tqdm(total=len(files), desc=endpoint.strip("/"), unit="img")
        async with httpx.AsyncClient(base_url=url, timeout=timeout_s) as client:

            async def one(i: int) -> None:
                path = files[i]
                async with gate:
                    response = await client.post(
                        endpoint, data=fields, files={"image": (path.name, path.read_bytes())}
                    )
                bar.update()
                if response.status_code != 200:
                    raise RuntimeError(f"{path.name}: {response.status_code} {response.text}")
                handle(i, response.json())

            await asyncio.gather(*(one(i) for i in range(len(files))))
        bar.close()

    asyncio.run(run())


def coco_results(
    annotation_file: Path,
    url: str,
    endpoint: str,
    *,
    model: str | None = None,
    limit: int | None = None,
    concurrency: int = 8,
) -> tuple[list[int], list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """(image ids, classes, COCO box results, COCO mask results) of a COCO set through
    ``/detect`` (no masks) or ``/instances``, with the evaluation thresholds. Labels map to
    the set's categories by name."""
    from training.common.coco import load_coco

    coco = load_coco(annotation_file)
    count = len(coco) if limit is None else min(limit, len(coco))
    category = dict(zip(coco.classes, coco.category_ids, strict=True))
    key = "instances" if endpoint == "/instances" else "detections"
    boxes: list[dict[str, Any]] = []
    masks: list[dict[str, Any]] = []

    def handle(i: int, body: dict[str, Any]) -> None:
        entry = coco[i]
        for item in body[key]:
            if item["label"] not in category:
                raise RuntimeError(f"label {item['label']!r} is not a category of the set")
            x1, y1, x2, y2 = item["box"]
            common = {
                "image_id": entry.id,
                "category_id": category[item["label"]],
                "score": item["score"],
            }
            boxes.append(common | {"bbox": [x1, y1, x2 - x1, y2 - y1]})
            if "mask" in item:
                if list(item["mask"]["size"]) != [entry.height, entry.width]:
                    raise RuntimeError(
                        f"{entry.file_name}: mask size {item['mask']['size']} is not "
                        f"[{entry.height}, {entry.width}]"
                    )
                masks.append(common | {"segmentation": item["mask"]})

    fields = DETECT_FIELDS | ({"model": model} if model else {})
    files = [coco.path(i) for i in range(count)]
    post_all(url, endpoint, files, fields, handle, concurrency=concurrency)
    return [coco[i].id for i in range(count)], list(coco.classes), boxes, masks


def decode_label_png(body: dict[str, Any]) -> np.ndarray:
    """The uint8 class map of a ``/segment`` answer."""
    mask = body["mask"]
    if mask.get("encoding") != "png":
        raise RuntimeError(f"unexpected mask encoding {mask.get('encoding')!r}")
    with Image.open(io.BytesIO(base64.b64decode(mask["data"]))) as im:
        if im.mode != "L":
            raise RuntimeError(f"label PNG mode {im.mode}, expected L (one channel)")
        return np.asarray(im, dtype=np.uint8)


def service_results(
    args: argparse.Namespace, endpoint: str
) -> tuple[list[int], list[str], list[dict[str, Any]], list[dict[str, Any]]]:
    """``coco_results`` of ``--annotations`` through ``--url``'s ``endpoint`` (``--model``,
    ``--limit``, ``--concurrency``): an ``evaluate-*`` command's."""
    return coco_results(
        args.annotations,
        args.url,
        endpoint,
        model=args.model,
        limit=args.limit,
        concurrency=args.concurrency,
    )
