"""`vision bench` (`make bench`): the serving benchmark of a bundled model, in one run.

1. raw ONNX Runtime throughput by batch size, with the runner's session settings;
2. a real server (bench.serverproc) per mode: the runner with adaptive batching on, then off,
   then ONNX in the HTTP workers (VISION_EXECUTION=local); against each, a closed-loop aiohttp
   client (bench_load) posts the request images to the model's endpoint (by its task:
   classification -> POST /classify, detection -> POST /detect) at each concurrency level,
   scraping /metrics before and after to get the runner's batch sizes and the pipeline's
   stage split;
3. prints markdown tables (and, for the classifier, the targets), appends them to
   docs/BENCHMARKS.md and plots docs/bench_classify.png or docs/bench_detect.png.

Per-task defaults (TASK_DEFAULTS): the classifier gets a real JPEG photo and a 28x28
Fashion-MNIST PNG; the detector a generated test scene (training.synth.scenes) and smaller raw
batches (a 320x320 batch of 128 takes seconds on a CPU).

Torch-free for the classifier: runs from the serving install plus aiohttp (BentoML's) and, for
the plot and the photo, matplotlib and scikit-image (dev extra). The `scene` image needs the
train extra; without it the photo is posted instead, and the report says so.
"""

from __future__ import annotations

import argparse
import atexit
import datetime as dt
import os
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import host
from bench.gallery import prefill
from bench.http import endpoint_for, run_server, say
from bench.images import sample_images
from bench.load import Request
from bench.raw import RawResult, raw_throughput
from bench.report import (
    LevelRow,
    append,
    http_table,
    plot,
    raw_table,
    section,
    stage_table,
    targets,
    targets_table,
)
from bench.serverproc import MODEL_STORE, ROOT
from bench.stats import multipart_body
from service.pipeline.package import ModelPackage
from service.settings import Settings

SETTINGS_SHOWN = (
    "http_workers",
    "runner_workers",
    "runner_threads",
    "max_batch_size",
    "max_latency_ms",
    "max_concurrency",
)


@dataclass(frozen=True)
class TaskDefaults:
    """What `vision bench` uses for a task unless the command line says otherwise."""

    images: str  # --images
    batch_sizes: tuple[int, ...]  # --batch-sizes (raw ONNX Runtime)
    targets: bool  # the serving targets (they are the classifier's)


TASK_DEFAULTS = {
    "classification": TaskDefaults("jpeg,png", (1, 8, 32, 128), targets=True),
    "detection": TaskDefaults("scene", (1, 8, 32), targets=False),
    "segmentation": TaskDefaults("scene", (1, 8, 32), targets=False),
    "instances": TaskDefaults("scene", (1, 8, 32), targets=False),
    "face_detection": TaskDefaults("face", (1, 8, 32), targets=False),
    "face_embedding": TaskDefaults("face", (1, 8, 32, 128), targets=False),
}


def default_plot(endpoint: str) -> Path:
    """docs/bench_classify.png, docs/bench_detect.png: one plot per endpoint."""
    return ROOT / "docs" / f"bench_{endpoint.strip('/').replace('/', '_')}.png"


def first_of_task(task: str) -> str:
    """The first bundled package of `task` (a model another needs: the face detector)."""
    for directory in sorted(MODEL_STORE.iterdir()):
        if (directory / "model.json").is_file() and ModelPackage.load(directory).task == task:
            return directory.name
    raise SystemExit(f"no {task} package in {MODEL_STORE}")


def _ints(text: str) -> list[int]:
    values = [int(v) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vision bench", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short levels: a smoke run")
    p.add_argument("--no-append", action="store_true", help="print only; leave docs/ alone")
    p.add_argument("--duration", type=float, default=None, help="seconds per level (8; quick 2)")
    p.add_argument("--warmup", type=float, default=None, help="warm-up seconds per level")
    p.add_argument("--concurrency", type=_ints, default=[1, 8, 32, 64])
    p.add_argument(
        "--batch-sizes",
        type=_ints,
        default=None,
        help="raw ORT batches (classifier 1,8,32,128; detector 1,8,32)",
    )
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument(
        "--images",
        default=None,
        help="request images: jpeg (photo), png (28x28), scene (generated detection scene); "
        "default jpeg,png for a classifier, scene for a detector",
    )
    p.add_argument(
        "--modes",
        default="on,off,local",
        help="on/off: the runner with adaptive batching on/off; local: ONNX in the HTTP workers",
    )
    p.add_argument("--model", default="fashion-classifier", help="package under model_store/")
    p.add_argument(
        "--gallery-faces",
        type=int,
        default=10_000,
        help="face embedder: synthetic faces in the gallery /faces/identify searches",
    )
    p.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the servers, e.g. VISION_HTTP_WORKERS=1",
    )
    p.add_argument("--output", type=Path, default=ROOT / "docs" / "BENCHMARKS.md")
    p.add_argument(
        "--plot",
        type=Path,
        default=None,
        help="default docs/bench_classify.png or docs/bench_detect.png, by the endpoint",
    )
    return p


def effective_settings(env: dict[str, str]) -> dict[str, str]:
    fields = Settings.model_fields
    return {
        name: env.get(f"VISION_{name.upper()}", str(fields[name].default))
        for name in SETTINGS_SHOWN
    }


def main(argv: list[str]) -> int:
    if argv[:1] == ["--"]:  # `vision bench -- --quick`: the CLI passes the separator through
        argv = argv[1:]
    args = build_parser().parse_args(argv)
    duration = args.duration or (2.0 if args.quick else 8.0)
    warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.5)
    overrides = dict(kv.split("=", 1) for kv in args.server_env)
    package_dir = MODEL_STORE / args.model
    package = ModelPackage.load(package_dir)
    overrides.update({"VISION_DEVICE": args.device, "VISION_MODELS": args.model})
    gallery_note = ""
    if package.task == "face_embedding":  # identify needs the detector and a gallery
        overrides["VISION_MODELS"] += "," + first_of_task("face_detection")
        data_dir = Path(tempfile.mkdtemp(prefix="vision-bench-gallery-"))
        atexit.register(shutil.rmtree, data_dir, True)
        prefill(package_dir, args.gallery_faces, data_dir)
        overrides.setdefault("VISION_DATA_DIR", str(data_dir))
        gallery_note = f"; a gallery of {args.gallery_faces:,} synthetic faces"
    env = {**os.environ, **overrides}
    settings = effective_settings(env)
    endpoint = endpoint_for(package.task)
    defaults = TASK_DEFAULTS[package.task]
    image_names = [n.strip() for n in (args.images or defaults.images).split(",") if n.strip()]
    batch_sizes = tuple(args.batch_sizes or defaults.batch_sizes)
    plot_path = args.plot or default_plot(endpoint)
    names = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not names or set(names) - {"on", "off", "local"}:
        raise SystemExit(f"--modes takes on, off and/or local, got {args.modes!r}")
    modes = names
    started = dt.datetime.now(dt.UTC)
    load_start = host.load_average()
    say(
        f"vision bench: {package.name} {package.version} ({package.task}, POST {endpoint}) on "
        f"{host.machine()}"
    )
    say(f"load average at start: {load_start}")

    import onnxruntime as ort

    raw: list[RawResult]
    raw, providers = raw_throughput(
        package_dir,
        args.device,
        int(settings["runner_threads"]),
        batch_sizes,
        repeats=3 if args.quick else 7,
        min_repeat_s=0.05 if args.quick else 0.2,
    )
    for r in raw:
        say(
            f"  raw onnxruntime batch {r.batch:4}: {r.ms_per_batch:8.3f} ms  "
            f"{r.images_per_s:9.0f} images/s"
        )

    samples = sample_images(image_names)
    for name, sample in samples.items():
        say(f"request {name}: {sample.description}")
    requests = {
        name: Request(
            "",
            *multipart_body("image", f"image.{sample.extension}", sample.data, sample.content_type),
        )
        for name, sample in samples.items()
    }
    rows: list[LevelRow] = []
    served: dict[str, Any] = {}
    for image, template in requests.items():
        for mode in modes:
            level_rows, served = run_server(
                args.model,
                args.concurrency,
                mode,
                image,
                template,
                overrides,
                duration,
                warmup,
                endpoint,
            )
            rows += level_rows
    busiest = max((r.other_load for r in rows), default=0.0)
    late = [
        f"{r.image}/{r.mode}/c={r.concurrency}: {r.overrun_s:.1f} s"
        for r in rows
        if r.overrun_s > 2
    ]

    raw_b1 = next((r.ms_per_batch for r in raw if r.batch == 1), None)
    checks = (
        [t for image in samples for t in targets(rows, raw_b1, image)] if defaults.targets else []
    )
    extra_tables = [("Targets", targets_table(checks))] if checks else []
    facts = [
        ("date", started.strftime("%Y-%m-%d %H:%M UTC")),
        ("machine", host.machine()),
        ("load average (1/5/15 min) at start / end", f"{load_start} / {host.load_average()}"),
        (
            "other processes",
            f"up to {busiest:.2f} cores busy outside the benchmark during a level"
            + (" - BUSY MACHINE, numbers are not representative" if busiest > 0.3 else ""),
        ),
        ("onnxruntime", f"{ort.__version__}, providers {', '.join(providers)}"),
        (
            "model",
            f"{package.name} {package.version}, {package.task} "
            f"(store tag {package.name}:{served.get('version', '?')}), "
            f"input {package.input.width}x{package.input.height} {package.input.layout} uint8",
        ),
        ("command", f"`{shlex.join(['vision', 'bench', *argv])}`"),
        (
            "server settings",
            ", ".join(f"{k}={v}" for k, v in settings.items()) + f", device={args.device}",
        ),
        *([("responses after the window", ", ".join(late))] if late else []),
        (
            "requests",
            f"POST {endpoint} with default parameters{gallery_note}; "
            + "; ".join(f"{n}: {s.description}" for n, s in samples.items()),
        ),
        (
            "load",
            f"closed-loop aiohttp clients on the same machine, {duration:g} s per level after "
            f"{warmup:g} s warm-up; latencies of 200 responses; a fresh server per image "
            "and mode",
        ),
    ]
    tables = [
        (
            "Raw ONNX Runtime (median per batch)",
            raw_table([(r.batch, r.ms_per_batch) for r in raw]),
        ),
        (f"HTTP POST {endpoint}", http_table(rows)),
        (f"Where the time goes, POST {endpoint} (server-side means, ms)", stage_table(rows)),
        *extra_tables,
    ]
    text = section(f"{started:%Y-%m-%d %H:%M} UTC, {package.name} {package.version}", facts, tables)
    say("\n" + text)
    if not args.no_append:
        append(args.output, text)
        title = f"{package.name} {package.version}, POST {endpoint}, {host.machine()}"
        plot(rows, plot_path, title)
        say(f"appended to {args.output}; plot {plot_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


def register(subparsers: argparse._SubParsersAction) -> None:
    """`vision bench`: every argument goes to the benchmark's own parser (`vision bench -h`)."""
    p = subparsers.add_parser(
        "bench", add_help=False, help="serving benchmark (appends to docs/BENCHMARKS.md)"
    )
    p.set_defaults(func=lambda _args, rest: main(rest), passthrough=True)
