"""Prompt presets: the exact official / fork / paper-era wording, greedy defaults, and config checks."""

import json

import pytest

from posevlm.errors import ConfigError
from posevlm.eval.prompts import FORK_SAMPLING, GenerationSettings, get_prompt, prompts

MCA = {"id": 7, "question_type": "object_rel_distance", "question": "Which object is closest to the sofa?",
       "options": ["A. chair", "B. table", "C. lamp", "D. tv"], "ground_truth": "B"}
NA = {"id": 8, "question_type": "object_counting", "question": "How many chair(s) are in this room?",
      "options": None, "ground_truth": "4"}


def test_registry_lists_the_presets_and_suggests():
    assert prompts.names() == ["answer_tags", "official", "point_cloud", "spatial_mllm_sft"]
    with pytest.raises(ConfigError, match="Did you mean: official"):
        get_prompt("oficial")


def test_official_mca_matches_lmms_eval_wording():
    # lmms-eval: "\n".join([pre_prompt, question, "Options:\n" + "\n".join(options), post_prompt])
    assert get_prompt("official").render(MCA) == (
        "These are frames of a video.\n"
        "Which object is closest to the sofa?\n"
        "Options:\nA. chair\nB. table\nC. lamp\nD. tv\n"
        "Answer with the option's letter from the given choices directly."
    )


def test_official_na_matches_lmms_eval_wording():
    assert get_prompt("official").render(NA) == (
        "These are frames of a video.\nHow many chair(s) are in this room?\n"
        "Please answer the question using a single word or phrase."
    )


def test_point_cloud_is_official_with_the_point_cloud_pre_prompt():
    for rec in (MCA, NA):
        official = get_prompt("official").render(rec)
        assert get_prompt("point_cloud").render(rec) == official.replace("These are frames of a video.",
                                                                          "This is a point cloud of a room.", 1)


def test_spatial_mllm_sft_is_official_without_pre_prompt():
    official, sft = get_prompt("official"), get_prompt("spatial_mllm_sft")
    for record in (MCA, NA):
        assert official.render(record) == "These are frames of a video.\n" + sft.render(record)
    assert sft.render(MCA) == (
        "Which object is closest to the sofa?\nOptions:\nA. chair\nB. table\nC. lamp\nD. tv\n"
        "Answer with the option's letter from the given choices directly."
    )


def test_answer_tags_asks_for_answer_tags_in_the_paper_era_layout():
    preset = get_prompt("answer_tags")
    assert preset.render(MCA) == (
        "Which object is closest to the sofa?Options:\nA. chair\nB. table\nC. lamp\nD. tv\n"
        " Please answer with the option's letter from the given choices (e.g., A, B, etc.) within the "
        "<answer> </answer> tags."
    )
    assert preset.render(NA) == (
        "How many chair(s) are in this room? Please answer with the only numerical value "
        "(e.g., 42, 3.14, etc.) within the <answer> </answer> tags."
    )


def test_multiline_questions_are_kept_verbatim():
    record = {**MCA, "question_type": "object_rel_direction_hard",
              "question": "Line one.\nQuadrants: ...\nWhich?"}
    assert "\nLine one.\nQuadrants: ...\nWhich?\nOptions:\n" in get_prompt("official").render(record)


@pytest.mark.parametrize("name", ["official", "spatial_mllm_sft", "answer_tags"])
def test_presets_are_greedy_versioned_and_serialisable(name):
    preset = get_prompt(name)
    assert preset.generation.greedy and preset.generation.do_sample is False
    d = preset.to_dict()
    assert d["name"] == name and isinstance(d["version"], int) and d["generation"]["do_sample"] is False
    json.dumps(d)  # goes into the run fingerprint
    assert GenerationSettings.from_dict(d["generation"]) == preset.generation


def test_official_decodes_16_tokens_like_lmms_eval():
    assert get_prompt("official").generation.max_new_tokens == 16


def test_bad_records_name_the_field():
    with pytest.raises(ConfigError, match="options"):
        get_prompt("official").render({**MCA, "options": None})
    with pytest.raises(ConfigError, match="question_type"):
        get_prompt("official").render({**MCA, "question_type": "route_plan"})
    with pytest.raises(ConfigError, match="'question'"):
        get_prompt("answer_tags").render({**NA, "question": None})


def test_generation_settings_validation_reports_all_problems():
    with pytest.raises(ConfigError) as err:
        GenerationSettings(max_new_tokens=0, temperature=0.1, num_beams=0)
    msg = str(err.value)
    assert "max_new_tokens" in msg and "num_beams" in msg and "do_sample=True" in msg
    with pytest.raises(ConfigError, match="unknown"):
        GenerationSettings.from_dict({"max_new_tokens": 4, "temprature": 0.1})


def test_generate_kwargs_leave_unset_values_out():
    assert GenerationSettings(max_new_tokens=8).generate_kwargs() == {
        "max_new_tokens": 8, "do_sample": False, "num_beams": 1, "use_cache": True}
    assert FORK_SAMPLING.generate_kwargs()["temperature"] == 0.1 and not FORK_SAMPLING.greedy
