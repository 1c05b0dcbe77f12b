"""Training datasets by name: a registry of annotation layouts under ``DATASET_ROOT``, ``name%N`` subsampling
and comma mixes (spec models.md §3.2).

``datasets`` (a :class:`posevlm.registry.Registry`, entry-point group ``posevlm.datasets``) maps a name to a
:class:`DatasetSpec` (one annotation file + the folder its media paths are relative to) or a
:class:`DatasetGroup` (several names). Paths are relative to the dataset root unless absolute; the root is
an explicit argument or the ``DATASET_ROOT`` environment variable.

A mix is ``"name[%N],name[%N],..."``: each term is a dataset or a group, ``%N`` keeps N percent of every
dataset it names (``floor(n * N / 100)``, at least 1 of a non-empty file), chosen by a generator seeded with
``(seed, sha256(dataset name))`` and kept in file order, so a subsample depends only on (seed, name, N,
file) and never on the mix around it. Terms concatenate in the order written; a name may repeat (two terms
= two copies).

The names of the research code (fork: src/qwenvl/data/__init__.py) are registered with its relative
paths; their data cannot be downloaded here, and loading one that is missing raises ``InputFileError``
naming the expected path, the root and where the data comes from. ``synthetic_train`` / ``synthetic_test``
(videos) and ``synthetic_train_posed`` / ``synthetic_test_posed`` (sampling-manifest folders, cameras
included) are what :func:`posevlm.train.synthetic.build_synthetic_training_set` writes.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Mapping, Sequence, Union

import numpy as np

from posevlm.errors import ConfigError, InputFileError
from posevlm.registry import Registry
from posevlm.train.records import Record, read_records

__all__ = ["DATASET_ROOT_ENV", "DatasetSpec", "DatasetGroup", "datasets", "MixTerm", "DataItem", "dataset_root",
           "parse_mix", "expand_mix", "subsample_indices", "load_dataset", "load_mix"]

DATASET_ROOT_ENV = "DATASET_ROOT"
_TERM = re.compile(r"^(?P<name>[^%\s]+)(?:%(?P<percent>\d+))?$")


@dataclass(frozen=True)
class DatasetSpec:
    """One annotation file. ``annotation`` / ``media_root``: relative to the dataset root, or absolute;
    ``media_root=""`` is the root itself. ``how_to_get``: where the data comes from (named in errors)."""

    annotation: str
    media_root: str = ""
    description: str = ""
    how_to_get: str = ""

    def annotation_path(self, root: Path) -> Path:
        return root / self.annotation  # an absolute annotation path replaces the root

    def media_path(self, root: Path) -> Path:
        return root / self.media_root if self.media_root else root

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DatasetGroup:
    """Several registered dataset names under one name (e.g. ``vica_322k_base``)."""

    members: tuple[str, ...]
    description: str = ""


#: Training datasets by name (``DatasetSpec`` or ``DatasetGroup``); plug-ins add their own through the
#: entry-point group ``posevlm.datasets``.
datasets: Registry[Union[DatasetSpec, DatasetGroup]] = Registry("dataset", "datasets")


@dataclass(frozen=True)
class MixTerm:
    """One term of a mix: a registered name and the percentage kept (None = all)."""

    name: str
    percent: int | None = None

    def __str__(self) -> str:
        return self.name if self.percent is None else f"{self.name}%{self.percent}"


@dataclass(frozen=True)
class DataItem:
    """One training sample before its media are loaded: the record, the folder its media paths are
    relative to, and the dataset it came from (``sample_id`` = ``"<dataset>/<record id>"``)."""

    record: Record
    media_root: str
    dataset: str

    @property
    def sample_id(self) -> str:
        return f"{self.dataset}/{self.record.sample_id}"


def dataset_root(root: str | Path | None = None, env: Mapping[str, str] = os.environ) -> Path:
    """``root`` if given, else ``$DATASET_ROOT``. Raises ConfigError when neither is set."""
    value = root if root is not None else env.get(DATASET_ROOT_ENV)
    if not value:
        raise ConfigError(f"no dataset root: pass dataset_root or set {DATASET_ROOT_ENV}=<folder holding the "
                          "annotation files and media>", field="dataset_root")
    return Path(value).expanduser()


def parse_mix(text: str) -> list[MixTerm]:
    """``"a%50,b"`` -> ``[MixTerm("a", 50), MixTerm("b")]``; every name must be registered.

    Raises:
        ConfigError: empty terms, a bad ``%N`` (N an int in 1..100) or unknown names, all reported at once.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"datasets must be a non-empty string like 'name%50,other'; got {text!r}", field="datasets")
    terms, problems = [], []
    for raw in text.split(","):
        part = raw.strip()
        m = _TERM.match(part)
        if m is None:
            problems.append(f"{part!r} is not 'name' or 'name%N'")
            continue
        percent = None if m["percent"] is None else int(m["percent"])
        if percent is not None and not 1 <= percent <= 100:
            problems.append(f"{part!r}: N in %N must be in 1..100")
        if m["name"] not in datasets:
            try:
                datasets.entry(m["name"])
            except ConfigError as exc:
                problems.append(str(exc))
            continue
        terms.append(MixTerm(m["name"], percent))
    if problems:
        raise ConfigError(f"invalid datasets {text!r}: " + "; ".join(problems), field="datasets", value=text)
    return terms


def expand_mix(terms: Sequence[MixTerm]) -> list[MixTerm]:
    """Groups replaced by their members (recursively), each member keeping the term's percentage."""
    out: list[MixTerm] = []
    for term in terms:
        entry = datasets.get(term.name)
        if isinstance(entry, DatasetGroup):
            out += expand_mix([MixTerm(m, term.percent) for m in entry.members])
        else:
            out.append(term)
    return out


def _stable_u32(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def subsample_indices(n: int, percent: int | None, *, seed: int, name: str) -> np.ndarray:
    """(k,) ascending indices of the ``percent``-subsample of ``n`` records of dataset ``name``;
    k = floor(n * percent / 100), at least 1 when n > 0. ``percent=None`` keeps all."""
    if percent is None or percent == 100:
        return np.arange(n, dtype=np.int64)
    k = max(1, n * percent // 100) if n else 0
    rng = np.random.default_rng([int(seed), _stable_u32(name)])
    return np.sort(rng.choice(n, size=k, replace=False)).astype(np.int64)


def load_dataset(name: str, *, root: str | Path | None = None, percent: int | None = None,
                 seed: int = 0) -> list[DataItem]:
    """The (subsampled) items of one registered dataset (not a group).

    Raises:
        InputFileError: the annotation file is missing (names the path, the root and where to get the data).
        RecordError: the file holds invalid records.
    """
    spec = datasets.get(name)
    if isinstance(spec, DatasetGroup):
        raise ConfigError(f"{name!r} is a group of {len(spec.members)} datasets; use load_mix({name!r})",
                          field="datasets", value=name)
    base = dataset_root(root)
    path = spec.annotation_path(base)
    if not path.is_file():
        fix = f" Get it: {spec.how_to_get}." if spec.how_to_get else ""
        raise InputFileError(f"dataset {name!r}: annotation file {path} does not exist ({DATASET_ROOT_ENV}={base}, "
                             f"expected <root>/{spec.annotation}).{fix} Or point {DATASET_ROOT_ENV} / dataset_root "
                             "at the folder that holds it.", path=path)
    records = read_records(path)
    media = str(spec.media_path(base))
    return [DataItem(records[i], media, name) for i in subsample_indices(len(records), percent, seed=seed, name=name)]


def load_mix(text: str, *, root: str | Path | None = None, seed: int = 0) -> list[DataItem]:
    """The items of a mix ``"a%50,b,group%10"`` in the order written (see the module docstring)."""
    items: list[DataItem] = []
    for term in expand_mix(parse_mix(text)):
        items += load_dataset(term.name, root=root, percent=term.percent, seed=seed)
    return items


# ---------------------------------------------------------------------------------------- built-in names
_SPMLLM = ("annotations from the Hugging Face dataset Diankun/Spatial-MLLM-Data (annotation/), videos of ScanNet, "
           "ScanNet++ and ARKitScenes under the root at the paths the records name")
_BUILTIN = {
    "spatial_mllm_mix_10_dbg": ("annotations/spatial-mllm-mix-10-dbg.jsonl", "", "10-sample debug subset of the "
                                "Spatial-MLLM mix", _SPMLLM),
    "spatial_mllm_mix_133k": ("annotations/spatial-mllm-mix-133k.jsonl", "", "Spatial-MLLM generated spatial QA + "
                              "ScanQA + SQA3D (v1.1-135K with route_plan_scannet_2k)", _SPMLLM),
    "spatial_mllm_mix_203k": ("annotations/spatial-mllm-mix-203k.jsonl", "", "Spatial-MLLM generated spatial QA + "
                              "ScanQA + SQA3D (v1.1-820K mix)", _SPMLLM),
    "route_plan_scannet_2k": ("annotations/routeplan-2k.jsonl", "", "VLM-3R route planning, ScanNet (~2k)",
                              "VLM-3R route-planning data (VITA-Group/VLM-3R) in the record format"),
    "route_plan_4k": ("annotations/routeplan-4k.jsonl", "", "VLM-3R route planning (~4k)",
                      "VLM-3R route-planning data (VITA-Group/VLM-3R) in the record format"),
    "vsi_590k": ("annotations/vsi-590k-processed.jsonl", "", "Cambrian-S VSI-590K",
                 "Cambrian-S VSI-590K after the fork's scripts/preprocess/preprocess_vsi_590k.py (paths prefixed "
                 "vsi-590k/)"),
    "mindcube_21k": ("annotations/mindcube-processed.jsonl", "", "MindCube (21k)",
                     "MindCube converted to the record format"),
    "sqa3d_filtered_40k": ("annotations/sqa3d_filtered_40k.jsonl", "", "the fork's filtered SQA3D subset (sqa40k)",
                           "the fork's filtered SQA3D annotations with ScanNet videos"),
    "sqa3d_filtered_40k_small": ("annotations/sqa3d_filtered_40k_small.jsonl", "", "small sqa40k subset (debug)",
                                 "the fork's filtered SQA3D annotations with ScanNet videos"),
}
VICA_SOURCES = ("arkitscenes", "scannet", "scannetpp")
VICA_BASE_TASKS = ("obj_appearance_order", "object_abs_distance", "object_count", "object_relative_distance",
                   "object_size_estimation", "room_size")
VICA_COMPLEX_TASKS = ("conversation", "furniture", "important_daily_necessities", "spatial_description", "usage",
                      "wheelchair_user")
_VICA = "ViCA-322K annotations (<root>/<source>/{base,complex}/<task>.json) with its videos under <root>/video"
_SYNTH = ("build it with posevlm.train.synthetic.build_synthetic_training_set(<root>/{folder}"
          "{posed}) (synthetic scans, nothing to download)")


def _register_builtins() -> None:
    for name, (annotation, media, description, how) in _BUILTIN.items():
        datasets.register(name, DatasetSpec(annotation, media, description, how), description=description)
    vica: dict[str, list[str]] = {}
    for source in VICA_SOURCES:
        base = VICA_BASE_TASKS + (("triangular_positional_relationship",) if source == "arkitscenes" else ())
        for kind, tasks in (("base", base), ("complex", VICA_COMPLEX_TASKS)):
            for task in tasks:
                for small in (("", "_small") if kind == "base" else ("",)):
                    name = f"vica_322k_{source}/{kind}/{task}{small}"
                    text = f"ViCA-322K {source} {kind} task {task}{' (small, debug)' if small else ''}"
                    datasets.register(name, DatasetSpec(f"{source}/{kind}/{task}{small}.json", "video", text, _VICA),
                                      description=text)
                    if not small:
                        for group in ("vica_322k_all", f"vica_322k_{source}", f"vica_322k_{kind}",
                                      f"vica_322k_{source}_{kind}"):
                            vica.setdefault(group, []).append(name)
    for group, members in vica.items():
        text = f"ViCA-322K group: {len(members)} task files (no _small variants)"
        datasets.register(group, DatasetGroup(tuple(members), text), description=text)
    for split in ("train", "test"):
        for posed, media in (("", "videos"), ("_posed", "sampling-manifest folders with cameras")):
            folder = f"synthetic_train{posed}"
            text = f"synthetic scans, VSI-style QA with exact answers, {split} split ({media})"
            how = _SYNTH.format(folder=folder, posed=", SyntheticTrainConfig(media='manifest')" if posed else "")
            datasets.register(f"synthetic_{split}{posed}", DatasetSpec(f"{folder}/{split}.jsonl", folder, text, how),
                              description=text)


_register_builtins()
