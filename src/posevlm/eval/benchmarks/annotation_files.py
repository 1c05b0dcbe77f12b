"""Finding a benchmark's released annotation files: a local file, a local directory, or a hub dataset.

``source`` is tried as a local path first; a directory is searched recursively for the file name (the
released archives nest them, e.g. SQA3D's ``sqa_task/balanced/``). Anything else is a Hugging Face dataset
repo id: only the files with that name are fetched (``snapshot_download`` with ``allow_patterns``), from the
local cache when ``HF_HUB_OFFLINE=1`` or ``local_files_only`` is set, after one quick reachability check
otherwise (``posevlm.hub``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from posevlm.errors import ConfigError, InputFileError

__all__ = ["find_annotation_file", "read_json"]


def _in_dir(root: Path, file_name: str) -> Path | None:
    found = sorted(root.rglob(file_name))
    if len(found) > 1:
        raise InputFileError(f"{root} holds {len(found)} files named {file_name} ({', '.join(map(str, found[:3]))}); "
                             "point --source at the folder that holds the one to use", path=root)
    return found[0] if found else None


def _from_hub(repo_id: str, file_name: str, *, local_files_only: bool) -> Path:
    try:
        from huggingface_hub import snapshot_download
    except ImportError as exc:  # pragma: no cover - a core dependency
        raise ConfigError("loading annotations from the hub needs huggingface_hub", field="source") from exc
    from posevlm.hub import hub_offline, hub_status

    offline = local_files_only or hub_offline()
    if not offline and (problem := hub_status()) is not None:
        raise InputFileError(f"cannot fetch {file_name} from the hub dataset {repo_id!r}: {problem}. Fix the network "
                             "/ proxy, set HF_HUB_OFFLINE=1 to use a cached copy, or pass the local file or folder as "
                             "--source")
    try:
        snapshot = Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=[file_name, f"**/{file_name}"],
                                          local_files_only=offline))
    except Exception as exc:  # noqa: BLE001 - offline without cache, unknown repo, auth: say what to do
        where = "the local hub cache (HF_HUB_OFFLINE=1)" if offline else "the hub"
        raise InputFileError(f"cannot load {file_name} of the hub dataset {repo_id!r} from {where} "
                             f"({type(exc).__name__}: {exc}). Download it once with `huggingface-cli download "
                             f"{repo_id} --repo-type dataset --local-dir <dir>` and pass that folder as --source")
    found = _in_dir(snapshot, file_name)
    if found is None:
        raise InputFileError(f"the hub dataset {repo_id!r} has no file named {file_name}; pass the folder of the "
                             "released annotations as --source", path=snapshot)
    return found


def find_annotation_file(source: str | Path, file_name: str, *, local_files_only: bool = False) -> Path:
    """The path of ``file_name`` for ``source``: ``source`` itself when it is a file of that name, the unique
    match under a local directory, else the file in the hub dataset ``source`` (see the module docstring).

    Raises:
        InputFileError: not found (the message names what was searched and how to fix it), or several
        matches under a directory.
    """
    path = Path(source)
    if path.is_file():
        if path.name != file_name:
            raise InputFileError(f"{path} is not {file_name}; pass that file or the folder holding it as --source",
                                 path=path)
        return path
    if path.is_dir():
        found = _in_dir(path, file_name)
        if found is None:
            raise InputFileError(f"{path} holds no {file_name} (searched recursively); pass the folder of the "
                                 "released annotations as --source", path=path)
        return found
    if path.is_absolute() or str(source).startswith((".", "~")) or str(source).count("/") > 1:
        raise InputFileError(f"{source} does not exist (not a file, folder or hub dataset id)", path=path)
    return _from_hub(str(source), file_name, local_files_only=local_files_only)


def read_json(path: Path) -> Any:
    """The parsed JSON of ``path``; ``InputFileError`` naming the file and the position on bad JSON."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{path} is not valid JSON ({exc})", path=path) from exc
