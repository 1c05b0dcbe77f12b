"""Dataset registry: DATASET_ROOT, the documented layouts, %N subsampling (deterministic, seeded) and comma mixes."""

import numpy as np
import pytest

from posevlm.errors import ConfigError, InputFileError
from posevlm.train import (
    DatasetGroup, DatasetSpec, MixTerm, dataset_root, datasets, expand_mix, load_dataset, load_mix, parse_mix,
    subsample_indices,
)  # fmt: skip
from train_world import write_jsonl


def _records(n, tag):
    return [{"id": f"{tag}{i}", "video": f"{tag}/{i}.mp4",
             "conversations": [{"from": "human", "value": "<video>Q"}, {"from": "gpt", "value": str(i)}]}
            for i in range(n)]


@pytest.fixture
def root(tmp_path):
    write_jsonl(tmp_path / "annotations" / "sqa3d_filtered_40k.jsonl", _records(40, "s"))
    write_jsonl(tmp_path / "annotations" / "routeplan-2k.jsonl", _records(7, "r"))
    for task in ("obj_appearance_order", "object_count"):
        write_jsonl(tmp_path / "scannet" / "base" / f"{task}.json", _records(20, task))
    return tmp_path


def test_documented_layouts_are_registered():
    expected = {
        "spatial_mllm_mix_133k": "annotations/spatial-mllm-mix-133k.jsonl",
        "spatial_mllm_mix_203k": "annotations/spatial-mllm-mix-203k.jsonl",
        "spatial_mllm_mix_10_dbg": "annotations/spatial-mllm-mix-10-dbg.jsonl",
        "route_plan_scannet_2k": "annotations/routeplan-2k.jsonl", "route_plan_4k": "annotations/routeplan-4k.jsonl",
        "vsi_590k": "annotations/vsi-590k-processed.jsonl", "mindcube_21k": "annotations/mindcube-processed.jsonl",
        "sqa3d_filtered_40k": "annotations/sqa3d_filtered_40k.jsonl",
        "sqa3d_filtered_40k_small": "annotations/sqa3d_filtered_40k_small.jsonl",
        "vica_322k_arkitscenes/base/triangular_positional_relationship":
            "arkitscenes/base/triangular_positional_relationship.json",
        "vica_322k_scannetpp/complex/wheelchair_user": "scannetpp/complex/wheelchair_user.json",
        "vica_322k_scannet/base/room_size_small": "scannet/base/room_size_small.json",
        "synthetic_train": "synthetic_train/train.jsonl", "synthetic_test_posed": "synthetic_train_posed/test.jsonl",
    }
    assert {name: datasets.get(name).annotation for name in expected} == expected
    assert datasets.get("vica_322k_scannet/base/room_size").media_root == "video"
    groups = {n: datasets.get(n) for n in ("vica_322k_all", "vica_322k_base", "vica_322k_complex",
                                             "vica_322k_arkitscenes", "vica_322k_scannet_base")}
    assert all(isinstance(g, DatasetGroup) for g in groups.values())
    # 3 sources x 6 base tasks + ARKitScenes' triangular task; 3 x 6 complex tasks; no _small variant in a group
    assert (len(groups["vica_322k_base"].members), len(groups["vica_322k_complex"].members)) == (19, 18)
    assert len(groups["vica_322k_all"].members) == 37 and len(groups["vica_322k_arkitscenes"].members) == 13
    assert not any(m.endswith("_small") for g in groups.values() for m in g.members)


def test_root_comes_from_the_argument_else_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("DATASET_ROOT", raising=False)
    with pytest.raises(ConfigError, match="DATASET_ROOT"):
        dataset_root()
    monkeypatch.setenv("DATASET_ROOT", str(tmp_path / "env"))
    assert dataset_root() == tmp_path / "env"
    assert dataset_root(tmp_path / "arg") == tmp_path / "arg"


def test_mix_parsing_and_errors():
    assert parse_mix(" sqa3d_filtered_40k%50 ,route_plan_4k") == [MixTerm("sqa3d_filtered_40k", 50),
                                                                  MixTerm("route_plan_4k")]
    with pytest.raises(ConfigError) as info:
        parse_mix("sqa3d_filterd_40k,route_plan_4k%0,vsi_590k%x,")
    text = str(info.value)  # every problem at once, with the suggestion
    assert "Did you mean: sqa3d_filtered_40k" in text and "1..100" in text and "'vsi_590k%x'" in text
    assert "'' is not" in text
    terms = expand_mix(parse_mix("vica_322k_scannet_base%30"))
    assert len(terms) == 6 and {t.percent for t in terms} == {30}
    assert all(t.name.startswith("vica_322k_scannet/base/") for t in terms)


def test_percent_subsample_is_seeded_deterministic_and_kept_in_file_order(root):
    full = load_dataset("sqa3d_filtered_40k", root=root)
    half = load_dataset("sqa3d_filtered_40k", root=root, percent=25, seed=3)
    assert len(full) == 40 and len(half) == 10
    assert [i.sample_id for i in half] == [i.sample_id for i in load_dataset("sqa3d_filtered_40k", root=root,
                                                                             percent=25, seed=3)]
    other = load_dataset("sqa3d_filtered_40k", root=root, percent=25, seed=4)
    assert [i.sample_id for i in half] != [i.sample_id for i in other]
    order = [int(i.record.sample_id[1:]) for i in half]
    assert order == sorted(order)
    assert half[0].sample_id.startswith("sqa3d_filtered_40k/s") and half[0].media_root == str(root)
    # floor, at least one record
    assert subsample_indices(7, 10, seed=0, name="x").size == 1 and subsample_indices(7, 50, seed=0, name="x").size == 3
    assert np.array_equal(subsample_indices(5, None, seed=0, name="x"), np.arange(5))


def test_mix_concatenates_in_order_and_a_subsample_does_not_depend_on_the_mix(root):
    alone = load_mix("sqa3d_filtered_40k%50", root=root, seed=1)
    mixed = load_mix("route_plan_scannet_2k,sqa3d_filtered_40k%50", root=root, seed=1)
    assert [i.dataset for i in mixed[:7]] == ["route_plan_scannet_2k"] * 7
    assert [i.sample_id for i in mixed[7:]] == [i.sample_id for i in alone]
    twice = load_mix("route_plan_scannet_2k,route_plan_scannet_2k", root=root)
    assert len(twice) == 14


def test_groups_subsample_each_member(root, monkeypatch):
    # only two of the six scannet base files exist: a mix naming the group fails on the first missing one
    with pytest.raises(InputFileError, match="object_abs_distance"):
        load_mix("vica_322k_scannet_base%50", root=root)
    monkeypatch.setattr(datasets.entry("vica_322k_scannet_base"), "obj", DatasetGroup(
        ("vica_322k_scannet/base/obj_appearance_order", "vica_322k_scannet/base/object_count")))
    items = load_mix("vica_322k_scannet_base%50", root=root)
    assert len(items) == 20 and {i.dataset for i in items} == {"vica_322k_scannet/base/obj_appearance_order",
                                                                "vica_322k_scannet/base/object_count"}
    assert items[0].media_root == str(root / "video")


def test_missing_dataset_names_the_path_the_root_and_the_source(tmp_path):
    with pytest.raises(InputFileError) as info:
        load_dataset("vsi_590k", root=tmp_path)
    text = str(info.value)
    assert str(tmp_path / "annotations" / "vsi-590k-processed.jsonl") in text and f"DATASET_ROOT={tmp_path}" in text
    assert "preprocess_vsi_590k.py" in text
    with pytest.raises(InputFileError, match="build_synthetic_training_set"):
        load_dataset("synthetic_train", root=tmp_path)


def test_absolute_paths_replace_the_root(tmp_path):
    spec = DatasetSpec(str(tmp_path / "a.jsonl"), str(tmp_path / "media"))
    assert spec.annotation_path(tmp_path / "elsewhere") == tmp_path / "a.jsonl"
    assert spec.media_path(tmp_path / "elsewhere") == tmp_path / "media"
