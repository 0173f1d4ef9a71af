"""Model packages <-> the BentoML model store.

A package directory (`model.json` + `model.onnx`) is imported under the tag
`<name>:<content hash>`, so re-importing the same files is a no-op. The service resolves
models by tag; `bentoml build` packs them because the services reference them as
`bentoml.models.BentoModel`.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import bentoml
from bentoml.exceptions import BentoMLException, NotFound

from service.pipeline.package import (
    MANIFEST_FILE,
    InvalidPackage,
    ModelPackage,
    StoredPackage,
    content_version,
    package_problems,
)

VISION_LABEL = "vision-package"


class InvalidPackageError(ValueError):
    """A package directory that cannot be served; `problems` says why, a line each."""

    def __init__(self, directory: Path, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.directory = directory
        self.problems = problems


@dataclass(frozen=True)
class ImportReport:
    imported: list[tuple[str, bool]]  # (tag, created)
    invalid: list[InvalidPackage]


def import_package(directory: Path) -> tuple[str, bool]:
    """Import one package directory; returns (tag, created). `InvalidPackageError` when it
    fails validation or misses a file."""
    problems = package_problems(directory)
    if problems:
        raise InvalidPackageError(directory, problems)
    package = ModelPackage.load(directory)
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


def import_all(root: Path) -> ImportReport:
    """Import every valid package directory below `root` (sorted, so tags are deterministic)
    and report the invalid ones."""
    imported, invalid = [], []
    for directory in sorted(root.iterdir()):
        if not (directory / MANIFEST_FILE).is_file():
            continue
        try:
            imported.append(import_package(directory))
        except InvalidPackageError as exc:
            invalid.append(
                InvalidPackage(name=directory.name, path=str(directory), problems=exc.problems)
            )
    return ImportReport(imported, invalid)


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


def resolve_tags(requested: list[str], skipped: frozenset[str] = frozenset()) -> list[str]:
    """Full `name:version` tags for the requested names/tags (all vision models if empty,
    less the `skipped` names: packages that failed validation, whose older versions may still
    be in the store).
    `NoModels` when the store has none: a server or a Bento without models is a mistake (most
    often `bentoml build` or `bentoml serve` run with another BENTOML_HOME than the import)."""
    if requested:
        return [str(bentoml.models.get(tag).tag) for tag in requested]
    tags = [tag for tag in _latest_vision_tags() if tag.split(":", 1)[0] not in skipped]
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
