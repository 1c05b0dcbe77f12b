"""Training records: both conversation styles, the <image> -> <video> rewrite, validation naming file, line, field."""

import json

import pytest

from posevlm.train import Record, RecordError, Turn, parse_record, read_records
from train_world import write_jsonl


def test_from_value_and_role_content_styles_parse_to_the_same_turns():
    sharegpt = {"id": 7, "video": "a.mp4", "conversations": [
        {"from": "system", "value": "Be brief."}, {"from": "human", "value": "<video>\nHow many?"},
        {"from": "gpt", "value": "3"}]}
    openai = {"id": "7", "video": ["a.mp4"], "conversations": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "<video>\nHow many?"},
        {"role": "assistant", "content": "3"}]}
    a, b = parse_record(sharegpt, path="x.jsonl", line=1), parse_record(openai, path="x.jsonl", line=1)
    assert a == b
    assert a.turns == (Turn("system", "Be brief."), Turn("user", "<video>\nHow many?"), Turn("assistant", "3"))
    assert a.sample_id == "7" and a.videos == ("a.mp4",) and a.images == ()


def test_image_tags_become_video_tags_only_in_video_records():
    vid = parse_record({"video": "v.mp4", "conversations": [{"from": "human", "value": "<image>\nQ"},
                                                            {"from": "gpt", "value": "A"}]}, path="d.jsonl", line=4)
    assert vid.turns[0].text == "<video>\nQ"
    assert vid.sample_id == "d:4"  # no id: file stem and line
    img = parse_record({"image": ["a.png", "b.png"], "conversations": [{"from": "human", "value": "<image><image>Q"},
                                                                       {"from": "gpt", "value": "A"}]})
    assert img.turns[0].text == "<image><image>Q" and img.images == ("a.png", "b.png")


def test_optional_fields_num_tokens_and_extra_are_kept():
    rec = parse_record({"video": "v.mp4", "num_tokens": 321, "question_type": "room_size",
                        "conversations": [{"from": "human", "value": "<video>Q"}, {"from": "gpt", "value": "A"}]})
    assert rec.num_tokens == 321 and rec.extra == {"question_type": "room_size"}
    assert isinstance(rec, Record)


@pytest.mark.parametrize("raw, field, words", [
    ({"video": "v.mp4", "conversations": [{"from": "bot", "value": "<video>"}]}, "conversations[0].from", "bot"),
    ({"video": "v.mp4", "conversations": [{"from": "human", "value": 3}]}, "conversations[0].value", "string"),
    ({"video": "v.mp4", "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}, "video",
     "0 <video> tag"),
    ({"video": ["a", "b"], "conversations": [{"from": "human", "value": "<video>Q"}]}, "video", "2 video(s)"),
    ({"video": "v", "conversations": [{"from": "human", "value": "<video>Q"}, {"from": "gpt", "value": "<video>"}]},
     "conversations[1]", "assistant"),
    ({"video": "v", "image": "i", "conversations": [{"from": "human", "value": "<video>"}]}, "image", "not both"),
    ({"video": "", "conversations": [{"from": "human", "value": "<video>"}]}, "video", "non-empty"),
    ({"conversations": []}, "conversations", "non-empty"),
    ({"conversations": [{"from": "human", "value": "Q"}], "num_tokens": -1}, "num_tokens", ">= 0"),
])
def test_invalid_records_name_the_field(raw, field, words):
    with pytest.raises(RecordError) as info:
        parse_record(raw, path="ann.jsonl", line=12)
    assert info.value.field == field and info.value.line == 12
    assert "ann.jsonl:12" in str(info.value) and words in str(info.value)


def test_every_problem_of_a_record_is_reported_at_once():
    raw = {"video": "v", "num_tokens": "x", "conversations": [{"from": "bot", "value": "Q"}]}
    with pytest.raises(RecordError) as info:
        parse_record(raw, path="f.json", line=3)
    assert "conversations[0].from" in str(info.value) and "num_tokens" in str(info.value)


def test_jsonl_and_json_array_give_the_same_records(tmp_path):
    recs = [{"id": i, "video": f"v{i}.mp4", "conversations": [{"from": "human", "value": "<video>Q"},
                                                            {"from": "gpt", "value": str(i)}]} for i in range(3)]
    write_jsonl(tmp_path / "a.jsonl", recs)
    (tmp_path / "a.json").write_text(json.dumps(recs, indent=2))
    from_lines, from_array = read_records(tmp_path / "a.jsonl"), read_records(tmp_path / "a.json")
    assert [r.turns for r in from_lines] == [r.turns for r in from_array]
    assert [r.source.rsplit(":", 1)[1] for r in from_lines] == ["1", "2", "3"]
    # the array's records start on lines 2, 14, 26 of the indented file
    starts = [i + 1 for i, line in enumerate((tmp_path / "a.json").read_text().splitlines()) if line == "  {"]
    assert [int(r.source.rsplit(":", 1)[1]) for r in from_array] == starts


def test_file_errors_name_the_line_of_each_bad_record(tmp_path):
    good = {"video": "v.mp4", "conversations": [{"from": "human", "value": "<video>Q"}, {"from": "gpt", "value": "A"}]}
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join([json.dumps(good), "{not json", json.dumps(good), json.dumps({**good, "video": 5})]))
    with pytest.raises(RecordError) as info:
        read_records(path)
    text = str(info.value)
    assert "2 invalid record(s)" in text and f"{path}:2: not JSON" in text and f"{path}:4:" in text
    assert info.value.line == 2
    bad_array = tmp_path / "bad.json"
    bad_array.write_text('[\n {"video": "v", "conversations": []},\n {"x": 1}\n]')
    with pytest.raises(RecordError) as info:
        read_records(bad_array)
    assert f"{bad_array}:2:" in str(info.value) and f"{bad_array}:3:" in str(info.value)


def test_repeated_ids_and_missing_files_are_refused(tmp_path):
    rec = {"id": "q", "conversations": [{"from": "human", "value": "Q"}, {"from": "gpt", "value": "A"}]}
    with pytest.raises(RecordError, match="repeats the record of line 1"):
        read_records(write_jsonl(tmp_path / "dup.jsonl", [rec, rec]))
    with pytest.raises(RecordError, match="does not exist"):
        read_records(tmp_path / "nope.jsonl")
