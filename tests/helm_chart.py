"""The Helm chart (helm/vision) rendered by Helm's own engine and parsed, for the chart tests
(tests/unit/test_helm.py) and the image test that runs the container as the chart's pod."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent.parent / "helm" / "vision"
RELEASE = "demo"
NAMESPACE = "vision-ns"

Manifests = dict[tuple[str, str], dict[str, Any]]


def render(chart: Any, values: dict[str, Any] | None = None) -> Manifests:
    """Render a loaded chart (`helm_python.Chart.load`) and parse it: {(kind, name): object};
    NOTES.txt under ("NOTES", "")."""
    rendered: dict[str, str] = chart.render(values=values, name=RELEASE, namespace=NAMESPACE)
    objects: Manifests = {}
    for template, text in rendered.items():
        if template.endswith("NOTES.txt"):
            objects[("NOTES", "")] = {"text": text}
            continue
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in objects, f"{key} rendered twice"
            doc["_template"] = template
            objects[key] = doc
    return objects


def one(objects: Manifests, kind: str) -> dict[str, Any]:
    found = [obj for (k, _), obj in objects.items() if k == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]
