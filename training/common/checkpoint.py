"""A run's checkpoints: ``last.pt`` after every epoch, ``best.pt`` at the best one.

Each holds what a resumed run needs to continue exactly (``training.common.run.Run.state``): the
model's weights (``model``) and those of any other trained module (``modules``), the optimiser,
the LR scheduler, the epoch, the best metric and its row, the early-stopping count, the run's
options (``args``) and command, the time trained so far, and every random number generator the
run draws from (``rng``: its own torch generators, torch's global one (dropout, mixup), CUDA's,
numpy's and Python's). Files are written to a temporary name and renamed, so a run killed
mid-write leaves the previous checkpoint whole. Everything is a tensor or a plain value, so
``torch.load(..., weights_only=True)`` reads it.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

LAST_FILE = "last.pt"
BEST_FILE = "best.pt"


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place."""
    temporary = path.with_name(f".{path.name}.tmp")
    torch.save(state, temporary)
    os.replace(temporary, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """The state of ``generators`` and of the global generators (torch, CUDA, numpy, Python)."""
    kind, keys, position, has_gauss, gauss = cast(
        tuple[str, np.ndarray, int, int, float], np.random.get_state(legacy=True)
    )
    state: dict[str, Any] = {
        "generators": {name: g.get_state() for name, g in generators.items()},
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    """Put ``generators`` and the global generators back where ``rng_state`` found them."""
    for name, generator in generators.items():
        generator.set_state(state["generators"][name])
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["position"], n["has_gauss"], n["gauss"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
