"""Micro-benchmark: where a segmenter's upsampling and argmax should run.

    python -m bench.seg_output [--model model_store/scenes-segmenter] [--no-record]

A. in the graph (what `train-segmenter` exports): ONNX Runtime returns uint8 class ids at the
   model's input size; numpy crops the letterbox border and resizes to the source size
   (nearest, `service.ops.label_maps.to_source`).
B. in numpy: the same graph cut before its final Resize (the logits at stride 4 become the
   output); numpy crops the logits' content region, resizes every class channel bilinearly to
   the source size (Pillow, float) and takes the argmax.

Both run on the same letterboxed image (the generated test scene `vision bench` posts, resized
to each source size), single-threaded ONNX Runtime, batch 1; the table gives the median
milliseconds of model + post-processing and how many pixels of B's map differ from A's (B
upsamples straight to the source size, A to the model input size first, so a few boundary
pixels differ). Needs the `onnx` package (train extra).
"""

from __future__ import annotations

import io
import os
import sys
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from bench.micro import destination, median_ms, micro_parser, publish
from service.ops.label_maps import content_region, to_source
from service.pipeline.package import ModelPackage

HEADING = "## Segmentation output: argmax in the graph or in numpy"
Region = tuple[int, int, int, int]
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "model_store" / "scenes-segmenter"


def logits_graph(model_path: Path, out: Path) -> tuple[Path, str]:
    """A copy of the graph whose output is the input of its last Resize (the low-res logits),
    keeping only the nodes that output needs."""
    import onnx
    from onnx import helper

    model = onnx.load(str(model_path))
    graph = model.graph
    resizes = [n for n in graph.node if n.op_type == "Resize"]
    if not resizes:
        raise SystemExit(f"{model_path}: no Resize node to cut before")
    logits = resizes[-1].input[0]
    needed, kept = {logits}, []
    for node in reversed(graph.node):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(i for i in node.input if i)
    del graph.node[:]
    graph.node.extend(reversed(kept))
    used = {i.name for i in graph.initializer if i.name in needed}
    initializers = [i for i in graph.initializer if i.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(logits, onnx.TensorProto.FLOAT, None))
    onnx.save(model, str(out))
    return out, logits


def sample_photo() -> np.ndarray | None:
    """A generated test scene (`bench.images.scene_jpeg`: Fashion-MNIST items on a
    held-out photo), or None when the training extra is missing."""
    try:
        from bench.images import scene_jpeg

        with Image.open(io.BytesIO(scene_jpeg().data)) as im:
            return np.asarray(im.convert("RGB"))
    except (ImportError, OSError):
        return None


def content(
    photo: np.ndarray | None, width: int, height: int, rng: np.random.Generator
) -> np.ndarray:
    """The letterbox content: the scene resized, or uniform noise without it."""
    if photo is None:
        return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(photo).resize((width, height), Image.Resampling.BILINEAR))


def numpy_upsample_argmax(
    logits: np.ndarray, region: Region, stride: float, width: int, height: int
) -> np.ndarray:
    """[C, h, w] logits -> uint8 [height, width]: each channel's content region resized
    bilinearly to the source size, then the argmax over channels."""
    x1, y1, x2, y2 = (v / stride for v in region)
    channels = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(c, dtype=np.float32)).resize(
                (width, height), Image.Resampling.BILINEAR, box=(x1, y1, x2, y2)
            )
        )
        for c in logits
    ]
    return np.argmax(np.stack(channels), axis=0).astype(np.uint8)


def run_in_graph(
    session: Any, input_name: str, image: np.ndarray, region: Region, width: int, height: int
) -> np.ndarray:
    (labels,) = session.run(None, {input_name: image})
    return to_source(labels[0], region, width, height)


def run_in_numpy(
    session: Any,
    input_name: str,
    image: np.ndarray,
    region: Region,
    stride: float,
    width: int,
    height: int,
) -> np.ndarray:
    (logits,) = session.run(None, {input_name: image})
    return numpy_upsample_argmax(logits[0], region, stride, width, height)


def main(argv: list[str] | None = None) -> int:
    parser = micro_parser("bench.seg_output", __doc__)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="segmentation package")
    parser.add_argument("--sizes", nargs="+", default=["320x240", "640x480", "1280x960"])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args(argv)
    try:
        import onnxruntime as ort
    except ImportError as exc:
        print(f"bench_seg_output needs onnxruntime: {exc}", file=sys.stderr)
        return 2
    import tempfile

    pkg = ModelPackage.load(args.model)
    if pkg.task != "segmentation":
        raise SystemExit(f"{args.model} is not a segmentation package")
    side = pkg.input.width
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    full = ort.InferenceSession(str(args.model / pkg.file), options, ["CPUExecutionProvider"])
    with tempfile.TemporaryDirectory() as tmp:
        cut_path, _ = logits_graph(args.model / pkg.file, Path(tmp) / "logits.onnx")
        cut = ort.InferenceSession(str(cut_path), options, ["CPUExecutionProvider"])
    input_name = full.get_inputs()[0].name
    rng = np.random.default_rng(0)
    photo = sample_photo()
    load_start = os.getloadavg()
    rows = []
    for text in args.sizes:
        width, height = (int(v) for v in text.split("x"))
        scale = side / max(width, height)
        pad_x, pad_y = (side - round(width * scale)) // 2, (side - round(height * scale)) // 2
        region = content_region(width, height, scale, scale, pad_x, pad_y)
        image = np.full((1, side, side, 3), pkg.input.pad_value, np.uint8)
        x1, y1, x2, y2 = region
        image[0, y1:y2, x1:x2] = content(photo, x2 - x1, y2 - y1, rng)
        (logits,) = cut.run(None, {input_name: image})
        stride = side / logits.shape[-1]

        in_graph = partial(run_in_graph, full, input_name, image, region, width, height)
        in_numpy = partial(run_in_numpy, cut, input_name, image, region, stride, width, height)
        a_ms = median_ms(in_graph, args.repeats)
        b_ms = median_ms(in_numpy, args.repeats)
        differ = float((in_graph() != in_numpy()).mean())
        rows.append((text, a_ms, b_ms, differ))
        print(f"{text}: in graph {a_ms:.1f} ms, numpy {b_ms:.1f} ms", flush=True)
    lines = [
        "| source size | A: argmax in graph, ms | B: logits + numpy, ms | B / A | "
        "pixels differing |",
        "|---|--:|--:|--:|--:|",
    ]
    for text, a_ms, b_ms, differ in rows:
        lines.append(f"| {text} | {a_ms:.1f} | {b_ms:.1f} | x{b_ms / a_ms:.2f} | {differ:.2%} |")
    table = "\n".join(lines)
    details = [
        f"model: {pkg.name} {pkg.version} ({side}x{side} input, {len(pkg.labels)} classes), "
        f"onnxruntime {ort.__version__} CPU, 1 thread, batch 1; median of {args.repeats} calls"
    ]
    publish("bench.seg_output", argv, details, table, heading=HEADING, output=destination(args),
            load_start=load_start)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
