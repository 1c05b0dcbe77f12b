"""The selection manifest ``selected_frames.json`` (schema version 2) and the frame file names.

A manifest is a superset of the legacy keys (``selected_frames``, ``num_frames``,
``selected_pool_indices`` / ``selected_prediction_indices``, ``initial_selected_frames``,
``initial_pool_indices``, ``sampling_type``, ``scene_name``) so existing evaluators keep working.
New keys are documented in docs/formats.md. Frame files are ``{scene}_frame_{id:06d}.png`` with a
``_{k}`` suffix for the k-th copy of a duplicated frame (k >= 2), so the lexicographic order of the
file names equals manifest order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from posevlm.errors import InputFileError, SchemaVersionError
from posevlm.sampling.config import SamplingConfig

__all__ = [
    "MANIFEST_NAME",
    "MANIFEST_FORMAT",
    "MANIFEST_SCHEMA_VERSION",
    "POOL_GEOMETRY_NAME",
    "frame_file_names",
    "read_manifest",
    "manifest_is_complete",
]

MANIFEST_NAME = "selected_frames.json"
MANIFEST_FORMAT = "posevlm.sampling_manifest"
MANIFEST_SCHEMA_VERSION = 2
POOL_GEOMETRY_NAME = "pool_geometry.npz"


def frame_file_names(scene_name: str, frame_ids: Sequence[int]) -> list[str]:
    """``{scene}_frame_{id:06d}.png``; the k-th repeat of an id gets ``_{k}`` (k = 2, 3, ...).

    Because ``.`` sorts before ``_``, sorting the names reproduces the (ascending) manifest order.
    """
    seen: dict[int, int] = {}
    names = []
    for fid in frame_ids:
        fid = int(fid)
        seen[fid] = seen.get(fid, 0) + 1
        suffix = "" if seen[fid] == 1 else f"_{seen[fid]}"
        names.append(f"{scene_name}_frame_{fid:06d}{suffix}.png")
    return names


def read_manifest(path: str | Path) -> dict[str, Any]:
    """Read a manifest file (or the manifest inside a scene output dir); legacy (unversioned)
    manifests are accepted and marked ``schema_version: 1``."""
    path = Path(path)
    if path.is_dir():
        path = path / MANIFEST_NAME
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputFileError(f"manifest {path} does not exist", path=path) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InputFileError(f"manifest {path} is not valid JSON ({exc}); re-run the sampler for this scene",
                             path=path) from exc
    if not isinstance(doc, dict):
        raise InputFileError(f"manifest {path} holds a JSON {type(doc).__name__}, not an object", path=path)
    version = int(doc.get("schema_version", 1))
    if version > MANIFEST_SCHEMA_VERSION:
        raise SchemaVersionError(f"{path}: manifest schema_version {version} is newer than this posevlm reads "
                                 f"({MANIFEST_SCHEMA_VERSION}); upgrade posevlm")
    if "selected_frames" not in doc:
        raise InputFileError(f"{path} has no 'selected_frames'; it is not a selection manifest", path=path)
    doc.setdefault("schema_version", version)
    return doc


def manifest_is_complete(scene_dir: Path, config: SamplingConfig) -> tuple[bool, str]:
    """(complete, reason): the manifest parses, was made by exactly ``config`` and every frame file
    it lists exists. Never deletes anything."""
    path = scene_dir / MANIFEST_NAME
    if not path.is_file():
        return False, "no manifest"
    try:
        doc = read_manifest(path)
    except (InputFileError, SchemaVersionError) as exc:
        return False, str(exc)
    if doc.get("format") != MANIFEST_FORMAT or doc.get("config") != config.to_dict():
        return False, "manifest was written by a different configuration"
    selected = doc.get("selected", [])
    if len(selected) != config.num_frames or len(doc["selected_frames"]) != config.num_frames:
        return False, f"manifest lists {len(selected)} frames, expected {config.num_frames}"
    missing = [s["file"] for s in selected if not (scene_dir / s["file"]).is_file()]
    if missing:
        return False, f"{len(missing)} frame file(s) missing, e.g. {missing[0]}"
    return True, "complete"


def as_list(array: np.ndarray | None) -> list | None:
    return None if array is None else np.asarray(array).tolist()
