"""Model packages <-> the BentoML model store.

A package directory (`model.json` + `model.onnx`) is imported under the tag
`<name>:<content hash>`, so re-importing the same files is a no-op. The service resolves
models by tag; `bentoml build` packs them because the services reference them as
`bentoml.models.BentoModel`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import bentoml
from bentoml.exceptions import BentoMLException, NotFound

from service.pipeline.package import MANIFEST_FILE, ModelPackage, StoredPackage, content_version

VISION_LABEL = "vision-package"


def import_package(directory: Path) -> tuple[str, bool]:
    """Import one package directory; returns (tag, created)."""
    package = ModelPackage.load(directory)
    for name in package.files():
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name} is missing")
    tag = f"{package.name}:{content_version(directory, package)}"
    try:
        bentoml.models.get(tag)
        return tag, False
    except NotFound:
        pass
    files = [MANIFEST_FILE, *package.files()]
    with bentoml.models.create(
        tag,
        labels={VISION_LABEL: "1", "task": package.task},
        metadata={"version": package.version, "task": package.task},
    ) as model:
        for name in files:
            shutil.copy2(directory / name, model.path_of(name))
    return tag, True


def import_all(root: Path) -> list[tuple[str, bool]]:
    """Import every package directory below `root` (sorted, so tags are deterministic)."""
    return [import_package(d) for d in sorted(root.iterdir()) if (d / MANIFEST_FILE).is_file()]


def _latest_vision_tags() -> list[str]:
    latest: dict[str, tuple[float, str]] = {}
    for model in bentoml.models.list():
        if model.info.labels.get(VISION_LABEL) != "1":
            continue
        created = model.info.creation_time.timestamp()
        name = model.tag.name
        if name not in latest or created > latest[name][0]:
            latest[name] = (created, str(model.tag))
    return [tag for _, tag in sorted(latest.values(), key=lambda item: item[1])]


class NoModels(BentoMLException):
    """The BentoML model store holds no vision model: nothing to serve or to pack."""


def resolve_tags(requested: list[str]) -> list[str]:
    """Full `name:version` tags for the requested names/tags (all vision models if empty).
    `NoModels` when the store has none: a server or a Bento without models is a mistake (most
    often `bentoml build` or `bentoml serve` run with another BENTOML_HOME than the import)."""
    if requested:
        return [str(bentoml.models.get(tag).tag) for tag in requested]
    tags = _latest_vision_tags()
    if not tags:
        home = os.environ.get("BENTOML_HOME", "~/bentoml (BentoML's default)")
        raise NoModels(
            f"no vision model in the BentoML model store at BENTOML_HOME={home}: import the "
            "packages first with the same BENTOML_HOME, e.g. `BENTOML_HOME=.bentoml vision "
            "import-models` (what `make build` and `vision serve` do), then build or serve"
        )
    return tags


def load(tag: str) -> StoredPackage:
    model = bentoml.models.get(tag)
    path = Path(model.path)
    return StoredPackage(tag=str(model.tag), path=path, package=ModelPackage.load(path))
