"""Face embedder training end to end: train -> export -> parity -> package, and resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from service.pipeline.package import FaceEmbeddingPost, ModelPackage  # noqa: E402
from training.faces.data import (  # noqa: E402
    load_folder,
    template,
)
from training.synth.face_synth import identity_images, write_dataset  # noqa: E402

# ---- end to end --------------------------------------------------------------------------------


def test_tiny_training_exports_a_valid_package(tmp_path: Path) -> None:
    from training.cli import main
    from training.common.export import ParityError, cpu_session
    from training.faces.export import check_embedding_parity
    from training.faces.model import EmbedderServingWrapper, FaceEmbedder

    write_dataset(tmp_path / "train", identities=12, images_per_identity=4, seed=0, size=64)
    write_dataset(tmp_path / "test", identities=4, images_per_identity=3, seed=1, size=64)
    out = tmp_path / "store" / "faces-tiny"
    argv = ["train-face-embedder", "--data", str(tmp_path / "train"), "--test"]
    argv += [str(tmp_path / "test"), "--lfw-subset", "--lfw-views", "2", "--epochs", "1"]
    argv += ["--steps-per-epoch", "3", "--batch", "4,2", "--image-size", "32", "--dim", "16"]
    argv += ["--widths", "8,8,16,16", "--depths", "1,1,1", "--val-fraction", "0.25"]
    argv += ["--threads", "1", "--out", str(out), "--run-dir", str(tmp_path / "run")]
    assert main([*argv, "--version", "0.1.0"]) == 0

    package = ModelPackage.load(out)
    assert package.task == "face_embedding" and package.name == "faces-tiny"
    assert (package.input.width, package.input.height) == (32, 32)
    post = package.postprocess
    assert isinstance(post, FaceEmbeddingPost) and post.dim == 16
    np.testing.assert_allclose(post.template, template(32), atol=1e-3)
    assert "train-face-embedder" in package.provenance.command
    assert {e.split.split(" ")[0] for e in package.evaluation} >= {"test", "validation"}
    assert (out / "roc.png").stat().st_size > 0 and (out / "metrics.json").exists()

    session = cpu_session(out / package.file)
    faces = load_folder(tmp_path / "test", 32).images.numpy()[:3]
    (emb,) = session.run([post.output], {package.input.name: faces})
    assert emb.shape == (3, 16) and emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    (mirror,) = session.run([post.output], {package.input.name: faces[:, :, ::-1].copy()})
    np.testing.assert_allclose(mirror, emb, atol=1e-5)  # mirror-image fusion in the graph

    model = FaceEmbedder(32, 16, (8, 8, 16, 16), (1, 1, 1))  # other weights: must fail parity
    images = np.random.default_rng(0).integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)
    with pytest.raises(ParityError):
        check_embedding_parity(EmbedderServingWrapper(model).eval(), out / package.file, images)


def test_data_landmarks_finds_the_generator_s_landmarks(tmp_path: Path) -> None:
    from PIL import Image
    from skimage import data as skdata

    from bench.serverproc import MODEL_STORE
    from training.faces.landmarks import write_landmarks

    truth = {}
    for person in range(3):
        (tmp_path / f"p{person}").mkdir()
        for n, (jpeg_bytes, points) in enumerate(identity_images(77, person, 3, 160)):
            rel = f"p{person}/{n}.jpg"
            (tmp_path / rel).write_bytes(jpeg_bytes)
            truth[rel] = points
    Image.fromarray(skdata.coffee()).save(tmp_path / "p0" / "cup.png")
    report = write_landmarks(tmp_path, MODEL_STORE / "faces-detector")
    marks = json.loads((tmp_path / "landmarks.json").read_text())
    assert report["images"] == 10 and "p0/cup.png" in report["without_face"]
    assert "p0/cup.png" not in marks and len(marks) >= 6
    errors = [np.abs(np.array(marks[rel]) - truth[rel]).max() for rel in marks]
    assert max(errors) < 8.0, errors  # pixels, on 160 px images with ~60 px faces


def test_an_interrupted_run_resumes_to_the_same_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ArcFace (a loss with weights: they are checkpointed too), dropout and augmentation:
    killed during epoch 2 and resumed, the run ends where the run left alone does."""
    import torch

    from tests.train_fixture import assert_same_run, interrupted_and_resumed
    from training.cli import main

    write_dataset(tmp_path / "train", identities=8, images_per_identity=3, seed=0, size=64)
    write_dataset(tmp_path / "test", identities=3, images_per_identity=3, seed=1, size=64)

    def argv(run: str) -> list[str]:
        return [
            "train-face-embedder", "--data", str(tmp_path / "train"), "--test",
            str(tmp_path / "test"), "--loss", "arcface", "--epochs", "2",
            "--steps-per-epoch", "2", "--batch", "4,2", "--image-size", "32", "--dim", "8",
            "--widths", "8,8,8,8", "--depths", "1,1,1", "--val-fraction", "0.25",
            "--threads", "1", "--out", str(tmp_path / run / "store" / "faces"),
            "--run-dir", str(tmp_path / run),
        ]  # fmt: skip

    assert main(argv("whole")) == 0
    interrupted_and_resumed(main, argv("resumed"), tmp_path / "resumed", monkeypatch)
    assert_same_run(tmp_path / "whole", tmp_path / "resumed")
    whole, resumed = (
        torch.load(tmp_path / r / "last.pt", weights_only=True)["modules"]
        for r in ("whole", "resumed")
    )
    weight = "head.weight"
    assert torch.equal(whole["criterion"][weight], resumed["criterion"][weight])
