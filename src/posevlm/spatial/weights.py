"""Checkpoints of spatial encoders: find them (file, directory, hub id), compare keys, load, save, dtypes.

- :func:`resolve_checkpoint`: a ``.safetensors`` file, a directory holding ``model.safetensors`` or a
  sharded ``model.safetensors.index.json``, or a hub id (``facebook/VGGT-1B``) fetched with
  ``huggingface_hub``. ``HF_HUB_OFFLINE=1`` (or ``offline=True``) reads the local cache only; when the hub
  does not answer within a few seconds (:func:`posevlm.hub.hub_status`) the cache is used with a warning,
  so nobody waits through half a minute of retries.
- :func:`compare_keys` (pure) lines the model's parameter shapes up with the checkpoint's and returns a
  :class:`KeyReport`: loaded, missing, unexpected, ignored (prefixes the model does not build, e.g.
  ``track_head.``) and shape mismatches, with a one-line :meth:`KeyReport.summary` that names the fix.
- :func:`load_weights` reads only the tensors it loads (safetensors is lazy), checks everything before
  touching the model, and loads into a model built on the ``meta`` device without ever initialising it.
- dtype policy: :func:`resolve_precision` picks the autocast dtype of a forward (bf16 on CUDA, none on CPU);
  :func:`apply_dtype_policy` stores parameters in a dtype but keeps named submodules (heads) in float32.

``safetensors`` and ``huggingface_hub`` are imported only when a checkpoint is read (both come with the
``hf`` extra that ``make`` installs).
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

from posevlm.errors import ConfigError, InputFileError
from posevlm.hub import hub_offline, hub_status

__all__ = [
    "SAFETENSORS_NAME", "INDEX_NAME", "CheckpointError", "KeyReport", "resolve_checkpoint", "checkpoint_shapes",
    "compare_keys", "load_weights", "save_weights", "resolve_precision", "apply_dtype_policy",
]

SAFETENSORS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_PRECISIONS = {"auto": None, "fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


class CheckpointError(InputFileError):
    """A checkpoint cannot be found or does not fit the model. ``report`` holds the key report, if any."""

    def __init__(self, message: str, *, path: str | Path | None = None, report: "KeyReport | None" = None):
        super().__init__(message, path=path)
        self.report = report


@dataclass(frozen=True)
class KeyReport:
    """How a checkpoint's tensors line up with a model's parameters.

    Fields:
        source: where the checkpoint came from (path or hub id).
        loaded: keys present in both with equal shapes.
        missing: model keys absent from the checkpoint.
        unexpected: checkpoint keys the model does not have (and no ignore prefix covers).
        ignored: checkpoint keys under an ignore prefix (modules this model does not build).
        mismatched: (key, checkpoint shape, model shape) of keys present in both with different shapes.
    """

    source: str
    loaded: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    unexpected: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    mismatched: tuple[tuple[str, tuple[int, ...], tuple[int, ...]], ...] = field(default=())

    @property
    def ok(self) -> bool:
        """Every model key was found with its shape and nothing unexplained was left over."""
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self, limit: int = 3) -> str:
        """One line: counts, the first ``limit`` names of each problem, what was ignored, and the fix."""

        def names(keys: Sequence[str]) -> str:
            more = f", ... (+{len(keys) - limit})" if len(keys) > limit else ""
            return ", ".join(keys[:limit]) + more

        parts = [f"{len(self.loaded)} loaded"]
        if self.missing:
            parts.append(f"{len(self.missing)} missing ({names(self.missing)})")
        if self.unexpected:
            parts.append(f"{len(self.unexpected)} unexpected ({names(self.unexpected)})")
        if self.mismatched:
            shown = [f"{k}: checkpoint {tuple(c)} vs model {tuple(m)}" for k, c, m in self.mismatched[:limit]]
            more = f", ... (+{len(self.mismatched) - limit})" if len(self.mismatched) > limit else ""
            parts.append(f"{len(self.mismatched)} shape mismatches ({'; '.join(shown)}{more})")
        if self.ignored:
            prefixes = sorted({k.split(".", 1)[0] + ".*" for k in self.ignored})
            parts.append(f"{len(self.ignored)} ignored ({', '.join(prefixes)})")
        line = f"checkpoint {self.source}: " + ", ".join(parts)
        if not self.ok:
            line += (". Fix: build the model with the config that matches the checkpoint (for facebook/VGGT-1B: "
                     "VGGTConfig.vggt_1b()), or pass strict=False to load only the keys that match")
        return line

    def to_dict(self) -> dict:
        return {"source": self.source, "loaded": len(self.loaded), "missing": list(self.missing),
                "unexpected": list(self.unexpected), "ignored": len(self.ignored),
                "mismatched": [[k, list(c), list(m)] for k, c, m in self.mismatched]}


# ---- finding checkpoints --------------------------------------------------------------------------------
def _files_in_dir(path: Path) -> tuple[Path, ...]:
    index = path / INDEX_NAME
    if index.is_file():
        return _shards_of_index(index)
    if (path / SAFETENSORS_NAME).is_file():
        return (path / SAFETENSORS_NAME,)
    found = sorted(path.glob("*.safetensors"))
    if len(found) == 1:
        return (found[0],)
    others = sorted(p.name for p in path.iterdir() if p.suffix in (".pt", ".pth", ".bin", ".safetensors"))
    hint = (f" It holds {', '.join(others)}: convert a .pt/.bin state dict with "
            "posevlm.spatial.save_weights(torch.load(path), out) first" if others else "")
    raise CheckpointError(f"{path} has no {SAFETENSORS_NAME} (nor {INDEX_NAME}).{hint}", path=path)


def _shards_of_index(index: Path) -> tuple[Path, ...]:
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{index} is not a safetensors index (needs a 'weight_map' object): {exc}",
                              path=index) from exc
    shards = tuple(index.parent / name for name in sorted(set(weight_map.values())))
    absent = [p.name for p in shards if not p.is_file()]
    if absent:
        raise CheckpointError(f"{index} lists shards that are missing: {', '.join(absent)}; download them too",
                              path=index)
    return shards


def _download(repo_id: str, *, revision: str | None, local_files_only: bool) -> tuple[Path, ...]:
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    try:
        return (Path(hf_hub_download(repo_id, SAFETENSORS_NAME, revision=revision,
                                     local_files_only=local_files_only)),)
    except EntryNotFoundError:
        index = Path(hf_hub_download(repo_id, INDEX_NAME, revision=revision, local_files_only=local_files_only))
    weight_map = json.loads(index.read_text())["weight_map"]
    return tuple(Path(hf_hub_download(repo_id, name, revision=revision, local_files_only=local_files_only))
                 for name in sorted(set(weight_map.values())))


def resolve_checkpoint(source: str | Path, *, revision: str | None = None,
                       offline: bool | None = None) -> tuple[Path, ...]:
    """The safetensors file(s) of ``source``: a file, a directory (``model.safetensors`` or a sharded index) or
    a hub id. ``offline`` (default: ``HF_HUB_OFFLINE``) reads the hub cache only. Raises CheckpointError with
    the fix when nothing is found."""
    path = Path(source).expanduser()
    if path.is_file():
        if path.name.endswith(".index.json"):
            return _shards_of_index(path)
        if path.suffix != ".safetensors":
            raise CheckpointError(f"{path} is not a .safetensors file; convert it with "
                                  "posevlm.spatial.save_weights(torch.load(path), out)", path=path)
        return (path,)
    if path.is_dir():
        return _files_in_dir(path)
    if path.exists() or not _HUB_ID.match(str(source)):
        raise CheckpointError(f"checkpoint {source} does not exist; pass a .safetensors file, a directory holding "
                              f"{SAFETENSORS_NAME}, or a hub id such as facebook/VGGT-1B", path=path)
    repo_id = str(source)
    offline = hub_offline() if offline is None else offline
    if not offline and (problem := hub_status()) is not None:  # fail (or fall back) now, not after ~30 s of retries
        try:
            files = _download(repo_id, revision=revision, local_files_only=True)
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint {repo_id} is not in the local cache and the hub is unreachable: "
                                  f"{problem}; fix the network / proxy, or download {SAFETENSORS_NAME} elsewhere "
                                  f"and pass its directory ({type(exc).__name__})", path=repo_id) from None
        warnings.warn(f"hub unreachable ({problem}): using the cached copy of {repo_id}; set HF_HUB_OFFLINE=1 to "
                      "skip this check", stacklevel=2)
        return files
    try:
        return _download(repo_id, revision=revision, local_files_only=offline)
    except (OSError, ValueError, KeyError) as exc:
        where = "in the local cache (offline)" if offline else "locally or on the hub"
        raise CheckpointError(f"checkpoint {repo_id} not found {where}; download it with "
                              f"`hf download {repo_id} {SAFETENSORS_NAME}` or pass a local directory "
                              f"({type(exc).__name__}: {exc})", path=repo_id) from exc


# ---- comparing and loading --------------------------------------------------------------------------------
def checkpoint_shapes(files: Iterable[Path]) -> dict[str, tuple[int, ...]]:
    """Key -> shape of every tensor in the safetensors ``files`` (headers only; no tensor is read)."""
    from safetensors import safe_open

    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        try:
            with safe_open(str(path), framework="pt") as f:
                for key in f.keys():
                    shapes[key] = tuple(f.get_slice(key).get_shape())
        except Exception as exc:  # safetensors raises its own SafetensorError (not an OSError) on bad files
            raise CheckpointError(f"{path} is not a readable safetensors file ({type(exc).__name__}: {exc})",
                                  path=path) from exc
    return shapes


def compare_keys(model_shapes: Mapping[str, Sequence[int]], checkpoint: Mapping[str, Sequence[int]], *,
                 ignore: Sequence[str] = (), source: str = "?") -> KeyReport:
    """Line up ``model_shapes`` (key -> shape) with ``checkpoint`` (key -> shape). Checkpoint keys starting with
    a prefix in ``ignore`` are reported as ignored, not unexpected."""
    loaded, missing, mismatched = [], [], []
    for key, shape in model_shapes.items():
        if key not in checkpoint:
            missing.append(key)
        elif tuple(checkpoint[key]) != tuple(shape):
            mismatched.append((key, tuple(checkpoint[key]), tuple(shape)))
        else:
            loaded.append(key)
    extra = [k for k in checkpoint if k not in model_shapes]
    ignored = [k for k in extra if any(k.startswith(p) for p in ignore)]
    unexpected = [k for k in extra if not any(k.startswith(p) for p in ignore)]
    return KeyReport(source, tuple(loaded), tuple(missing), tuple(unexpected), tuple(ignored), tuple(mismatched))


def load_weights(model: nn.Module, source: str | Path | Sequence[Path], *, ignore: Sequence[str] = (),
                 strict: bool = True, device: str | torch.device | None = None, revision: str | None = None,
                 offline: bool | None = None) -> KeyReport:
    """Load the safetensors checkpoint ``source`` (see :func:`resolve_checkpoint`, or a list of files) into
    ``model`` by parameter name. Keys under ``ignore`` are skipped without reading them.

    Strict (default): any missing, unexpected or mis-shaped key raises CheckpointError (with the report)
    before the model is touched. Not strict: the matching keys load, the rest keep their values. A model
    built on the ``meta`` device receives the checkpoint tensors themselves (no copy, no initialisation);
    it must then be complete (missing keys would stay on ``meta``). Tensors are read onto ``device``
    (default: where the model's parameters are; CPU for a meta model) and cast to the parameter dtype.
    """
    from safetensors import safe_open

    files = tuple(Path(p) for p in source) if isinstance(source, (list, tuple)) else \
        resolve_checkpoint(source, revision=revision, offline=offline)
    label = str(source) if isinstance(source, (str, Path)) else ", ".join(str(p) for p in files)
    state = model.state_dict(keep_vars=True)
    report = compare_keys({k: tuple(v.shape) for k, v in state.items()}, checkpoint_shapes(files),
                          ignore=ignore, source=label)
    on_meta = any(v.is_meta for v in state.values())
    if not report.ok and (strict or (on_meta and (report.missing or report.mismatched))):
        why = "" if strict else " (the model is on the meta device, so every key must load)"
        raise CheckpointError(report.summary() + why, path=label, report=report)
    wanted = set(report.loaded)
    target = torch.device(device) if device is not None else (
        torch.device("cpu") if on_meta else next(iter(state.values())).device)
    tensors: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for path in files:
            with safe_open(str(path), framework="pt", device=str(target)) as f:
                for key in f.keys():
                    if key not in wanted:
                        continue
                    value = f.get_tensor(key)
                    param = state[key]
                    dtype = param.dtype if param.dtype.is_floating_point else value.dtype
                    if on_meta:
                        tensors[key] = value.to(dtype)
                    else:
                        param.copy_(value.to(device=param.device, dtype=dtype))
    if on_meta:
        model.load_state_dict(tensors, strict=True, assign=True)
    return report


def save_weights(state: nn.Module | Mapping[str, torch.Tensor], path: str | Path, *,
                 metadata: Mapping[str, str] | None = None) -> Path:
    """Write a module's state dict (or a key -> tensor mapping) to ``path`` as safetensors (contiguous copies;
    tied tensors are written once per key)."""
    from safetensors.torch import save_file

    tensors = state.state_dict() if isinstance(state, nn.Module) else dict(state)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().clone() for k, v in tensors.items()}, str(path),
              metadata=dict(metadata) if metadata else None)
    return path


# ---- dtype policy -------------------------------------------------------------------------------------------
def resolve_precision(precision: str, device: torch.device | str) -> torch.dtype | None:
    """Autocast dtype of a forward: ``auto`` = bf16 on CUDA (fp16 where bf16 is unsupported), none (the
    parameters' dtype, normally fp32) elsewhere; ``fp32`` none; ``bf16`` / ``fp16`` that dtype."""
    if precision not in _PRECISIONS:
        raise ConfigError(f"precision={precision!r}; choose one of {', '.join(_PRECISIONS)}", field="precision",
                          value=precision)
    device = torch.device(device)
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return _PRECISIONS[precision]


def apply_dtype_policy(model: nn.Module, dtype: torch.dtype | None, *, keep_fp32: Sequence[str] = ()) -> nn.Module:
    """Store ``model``'s floating parameters in ``dtype`` (None: leave them), except the submodules named in
    ``keep_fp32`` (attribute names, e.g. ``camera_head``), which are stored in float32. Returns ``model``."""
    if dtype is None:
        return model
    if not dtype.is_floating_point:
        raise ConfigError(f"dtype={dtype} is not a floating dtype; use torch.float32, torch.bfloat16 or "
                          "torch.float16", field="dtype", value=str(dtype))
    keep = {name for name in keep_fp32 if getattr(model, name, None) is not None}
    for name, child in model.named_children():
        child.to(torch.float32 if name in keep else dtype)
    for name, param in model.named_parameters(recurse=False):
        param.data = param.data.to(dtype)
    return model
