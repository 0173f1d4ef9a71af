"""REST vs gRPC (typed vision.v1) vs gRPC Open Inference Protocol, in one run (`make bench`).

One server per model (batching on, the default settings); for each protocol and concurrency,
closed-loop clients send the same image back to back for a fixed time after a warm-up:
- REST: multipart POST (/classify, /detect), the body built once, aiohttp;
- gRPC typed: `vision.v1.VisionService/Classify` (or Detect) with the image bytes;
- gRPC OIP: `inference.GRPCInferenceService/ModelInfer`, one BYTES element in
  `raw_input_contents` (what tritonclient sends).
Every client coroutine has its own connection (REST: its own kept-alive connection; gRPC: its
own channel on a private subchannel pool), so each protocol spreads over the server's workers
the same way. Prints a table, appends it to docs/BENCHMARKS.md and plots
docs/bench_protocols.png.

    python -m bench.protocols [--models fashion-classifier,scenes-detector]
        [--concurrency 1,8,32] [--duration 8] [--no-append]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc

from bench.http import endpoint_for, say
from bench.images import sample_images
from bench.micro import BENCHMARKS_MD, publish
from bench.serverproc import MODEL_STORE, start_server
from bench.stats import fmt, markdown_table, multipart_body, percentile
from service.api.grpc.oip import oip_pb2, oip_pb2_grpc
from service.api.grpc.vision_v1 import vision_pb2, vision_pb2_grpc
from service.api.oip.tensors import serialize_bytes
from service.pipeline.package import ModelPackage

HEADING = "## Protocols: REST vs gRPC typed vs gRPC OIP"
PROTOCOLS = ("REST", "gRPC typed", "gRPC OIP")
IMAGES = {"classification": "png", "detection": "scene"}
Call = Callable[[], Awaitable[None]]


@dataclass
class Level:
    model: str
    protocol: str
    concurrency: int
    duration_s: float
    latencies_ms: list[float] = field(default_factory=list)
    in_window: int = 0
    errors: dict[str, int] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.in_window / self.duration_s

    def latency(self, q: float) -> float | None:
        return percentile(self.latencies_ms, q) if self.latencies_ms else None


async def _worker(call: Call, end: float, level: Level | None) -> None:
    while time.perf_counter() < end:
        start = time.perf_counter()
        try:
            await call()
        except Exception as exc:  # any failure is counted by kind, never hidden
            if level is not None:
                name = (
                    exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
                )
                level.errors[name] = level.errors.get(name, 0) + 1
            continue
        done = time.perf_counter()
        if level is not None:
            level.latencies_ms.append((done - start) * 1000)
            level.in_window += done <= end


async def _measure(calls: list[Call], level: Level, warmup_s: float) -> Level:
    end = time.perf_counter() + warmup_s
    await asyncio.gather(*(_worker(call, end, None) for call in calls))
    end = time.perf_counter() + level.duration_s
    await asyncio.gather(*(_worker(call, end, level) for call in calls))
    return level


class _Rest:
    def __init__(self, url: str, data: bytes, content_type: str, task: str) -> None:
        self.url = url + endpoint_for(task)
        extension = content_type.removeprefix("image/")
        self.body, self.header = multipart_body("image", f"image.{extension}", data, content_type)

    async def run(self, level: Level, warmup_s: float) -> Level:
        sessions = [
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1))
            for _ in range(level.concurrency)
        ]

        def caller(session: aiohttp.ClientSession) -> Call:
            async def call() -> None:
                headers = {"Content-Type": self.header}
                async with session.post(self.url, data=self.body, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(str(response.status))

            return call

        try:
            return await _measure([caller(s) for s in sessions], level, warmup_s)
        finally:
            for session in sessions:
                await session.close()


class _Grpc:
    def __init__(self, target: str, model: str, task: str, data: bytes, protocol: str) -> None:
        self.target = target
        self.protocol = protocol
        if protocol == "gRPC OIP":
            self.request: Any = oip_pb2.ModelInferRequest(
                model_name=model,
                inputs=[
                    oip_pb2.ModelInferRequest.InferInputTensor(
                        name="IMAGE", datatype="BYTES", shape=[1]
                    )
                ],
                raw_input_contents=[serialize_bytes([data])],
            )
        elif task == "classification":
            self.request = vision_pb2.ClassifyRequest(image=data, model=model)
        else:
            self.request = vision_pb2.DetectRequest(image=data, model=model)
        self.task = task

    def _method(self, channel: grpc.aio.Channel) -> Callable[..., Awaitable[Any]]:
        if self.protocol == "gRPC OIP":
            return oip_pb2_grpc.GRPCInferenceServiceStub(channel).ModelInfer
        stub = vision_pb2_grpc.VisionServiceStub(channel)
        return stub.Classify if self.task == "classification" else stub.Detect

    async def run(self, level: Level, warmup_s: float) -> Level:
        options = [("grpc.use_local_subchannel_pool", 1)]  # a connection per client
        channels = [
            grpc.aio.insecure_channel(self.target, options=options)
            for _ in range(level.concurrency)
        ]

        def caller(channel: grpc.aio.Channel) -> Call:
            method = self._method(channel)

            async def call() -> None:
                await method(self.request, timeout=60)

            return call

        try:
            return await _measure([caller(c) for c in channels], level, warmup_s)
        finally:
            for channel in channels:
                await channel.close()


def bench_model(
    model: str, concurrency: list[int], duration_s: float, warmup_s: float
) -> tuple[list[Level], str]:
    package = ModelPackage.load(MODEL_STORE / model)
    sample = sample_images([IMAGES[package.task]])[IMAGES[package.task]]
    levels: list[Level] = []
    with (
        tempfile.TemporaryDirectory(prefix="vision-bench-protocols-") as tmp,
        start_server(Path(tmp), {"VISION_MODELS": model}) as server,
    ):
        target = f"127.0.0.1:{server.grpc_port}"
        clients: dict[str, Any] = {
            "REST": _Rest(server.url, sample.data, sample.content_type, package.task),
            "gRPC typed": _Grpc(target, model, package.task, sample.data, "gRPC typed"),
            "gRPC OIP": _Grpc(target, model, package.task, sample.data, "gRPC OIP"),
        }
        for c in concurrency:
            for protocol in PROTOCOLS:
                level = Level(model, protocol, c, duration_s)
                asyncio.run(clients[protocol].run(level, warmup_s))
                levels.append(level)
                say(
                    f"  {model} {protocol:10} c={c:<3} {level.rps:7.1f} req/s  "
                    f"p50 {fmt(level.latency(50), 2):>7} ms  "
                    f"p99 {fmt(level.latency(99), 2):>7} ms  errors {level.errors or 0}"
                )
        if not server.alive():
            raise RuntimeError(f"the server died:\n{server.log_tail()}")
    return levels, sample.description


def table(levels: list[Level]) -> str:
    rest = {(lv.model, lv.concurrency): lv.rps for lv in levels if lv.protocol == "REST"}
    rows = []
    for lv in levels:
        base = rest.get((lv.model, lv.concurrency)) or 0.0
        rows.append(
            [
                lv.model,
                lv.protocol,
                lv.concurrency,
                fmt(lv.rps, 1),
                fmt(lv.latency(50), 2),
                fmt(lv.latency(99), 2),
                sum(lv.errors.values()),
                f"{lv.rps / base:.2f}" if base else "-",
            ]
        )
    headers = ["model", "protocol", "clients", "req/s", "p50 ms", "p99 ms", "errors", "vs REST"]
    return markdown_table(headers, rows)


def plot(levels: list[Level], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({lv.model for lv in levels})
    fig, axes = plt.subplots(len(models), 2, figsize=(10, 3.6 * len(models)), squeeze=False)
    for row, model in enumerate(models):
        for protocol, marker in zip(PROTOCOLS, "os^", strict=True):
            pts = sorted(
                (lv for lv in levels if (lv.model, lv.protocol) == (model, protocol)),
                key=lambda lv: lv.concurrency,
            )
            xs = [lv.concurrency for lv in pts]
            axes[row][0].plot(xs, [lv.rps for lv in pts], marker=marker, label=protocol)
            p99 = [lv.latency(99) or float("nan") for lv in pts]
            axes[row][1].plot(xs, p99, marker=marker, label=protocol)
        for ax, label in zip(axes[row], ("requests/s", "p99 latency (ms)"), strict=True):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("concurrent clients")
            ax.set_ylabel(label)
            ax.set_title(model, fontsize=9)
            ax.grid(True, alpha=0.3)
            ax.set_ylim(bottom=0)
        axes[row][0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.protocols")
    parser.add_argument("--models", default="fashion-classifier,scenes-detector")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per level")
    parser.add_argument("--warmup", type=float, default=1.5, help="warm-up seconds per level")
    parser.add_argument("--no-append", action="store_true", help="print only")
    parser.add_argument("--plot", type=Path, default=BENCHMARKS_MD.parent / "bench_protocols.png")
    args = parser.parse_args(argv)
    load_start = os.getloadavg()
    concurrency = [int(c) for c in args.concurrency.split(",")]
    levels: list[Level] = []
    images = []
    for model in [m.strip() for m in args.models.split(",") if m.strip()]:
        say(f"bench_protocols: {model}")
        model_levels, description = bench_model(model, concurrency, args.duration, args.warmup)
        levels += model_levels
        images.append(f"{model}: {description}")
    details = [
        "one server per model, batching on, default settings (2 HTTP workers, each with its "
        "gRPC server on the shared port)",
        "closed-loop clients on the same machine, a connection per client, "
        f"{args.duration:g} s per level after {args.warmup:g} s warm-up",
        "images: " + "; ".join(images),
        f"plot: {args.plot.name}",
    ]
    publish(
        "bench.protocols",
        argv if argv is not None else sys.argv[1:],
        details,
        table(levels),
        heading=HEADING,
        output=None if args.no_append else BENCHMARKS_MD,
        load_start=load_start,
    )
    if not args.no_append:
        plot(levels, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
