"""The lmms-eval plug-in: request handling (model args, generation settings, stop strings, frames per document,
answering in request order with one decode per scene), the entry point lmms-eval's registry loads, and the real
`lmms-eval` CLI on a local task with a tiny pose-aware checkpoint, answering exactly as `posevlm eval` does."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from eval_world import N, SAMPLER

from posevlm.errors import ConfigError
from posevlm.eval.errors import DecodeError, InvalidInputError, SampleError
from posevlm.eval.frames import FolderManifest, FrameCache, Mp4Uniform
from posevlm.eval.lmms.requests import (
    LmmsModelConfig, answer_requests, cut_at_stops, generation_settings, plan_request,
)  # fmt: skip
from posevlm.eval.prompts import GenerationSettings

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

REPO = Path(__file__).parents[2]
SLUG = SAMPLER.slug


def test_model_args_take_the_frame_count_from_the_slug_and_validate_everything():
    cfg = LmmsModelConfig.from_model_args({"pretrained": "/ckpt", "frames_root": f"/runs/sampled/{SLUG}",
                                           "positions": "pthw", "camera_attention": "prope", "batch_size": "2",
                                           "device": None, "max_batch_size": None})
    assert cfg.num_frames == N and cfg.hf == {"positions": "pthw", "camera_attention": "prope", "batch_size": 2}
    assert cfg.backend_config().positions == "pthw" and cfg.backend_config().batch_size == 2
    given = LmmsModelConfig.from_model_args({"pretrained": "m", "frames_root": f"/x/{SLUG}", "num_frames": 4})
    assert given.num_frames == 4
    spec = LmmsModelConfig.from_model_args({"pretrained": "m", "frames_root": f"/x/{SLUG}",
                                            "positions": '{"mode": "pthw", "pose_reference": "medoid"}'})
    assert spec.hf["positions"] == {"mode": "pthw", "pose_reference": "medoid"}
    with pytest.raises(ConfigError, match="'postions' \\(did you mean 'positions'\\?\\)"):
        LmmsModelConfig.from_model_args({"pretrained": "m", "postions": "pthw"})
    with pytest.raises(ConfigError, match="frames_root=<a posevlm sample slug folder>"):
        LmmsModelConfig.from_model_args({"pretrained": "m", "camera_attention": "prope"})  # videos carry no cameras
    with pytest.raises(ConfigError, match="no __n<N> in its name"):
        LmmsModelConfig.from_model_args({"pretrained": "m", "frames_root": "/frames/anything"})
    with pytest.raises(ConfigError, match="automatic batch size"):
        LmmsModelConfig.from_model_args({"pretrained": "m", "batch_size": "auto"})
    with pytest.raises(ConfigError, match="frame_policy='pad'.*on_error='skip'"):  # every problem at once
        LmmsModelConfig.from_model_args({"pretrained": "m", "frame_policy": "pad", "on_error": "skip"})


def test_generation_settings_follow_the_harness_conventions():
    s, until, ignored = generation_settings({"max_new_tokens": 16, "temperature": 0, "top_p": 1.0, "num_beams": 1,
                                             "do_sample": False, "until": ["\n\n"], "image_aspect_ratio": "pad"})
    assert s == GenerationSettings(max_new_tokens=16) and s.greedy  # temperature 0 / top_p 1: greedy
    assert until == ("\n\n",) and ignored == ("image_aspect_ratio",)
    s, until, _ = generation_settings({"temperature": 0.7, "top_p": 0.9, "until": "Q:"})
    assert (s.do_sample, s.temperature, s.top_p, s.max_new_tokens, until) == (True, 0.7, 0.9, 16, ("Q:",))
    assert generation_settings({})[0] == GenerationSettings(max_new_tokens=16)
    with pytest.raises(ConfigError, match="until"):
        generation_settings({"until": [3]})


def test_stop_strings_cut_at_their_earliest_occurrence():
    rng = np.random.default_rng(0)
    for _ in range(500):
        text = "".join(rng.choice(list("ab\n. "), rng.integers(0, 12)))
        stops = ["".join(rng.choice(list("ab\n"), rng.integers(1, 3))) for _ in range(rng.integers(0, 3))]
        cut = cut_at_stops(text, stops)
        assert text.startswith(cut) and not any(s in cut for s in stops)
        assert cut == text or any(text[len(cut):].startswith(s) for s in stops)


def _request(doc_id, *, task="t", gen=None, visual=None):
    return ("prompt " + str(doc_id), gen or {"max_new_tokens": 4, "until": ["\n\n"]}, visual or (lambda doc: []),
            doc_id, task, "test")


DOCS = {"t": {"test": [{"dataset": "synthetic", "scene_name": f"synth_{i % 2:04d}", "id": i} for i in range(5)]}}


def test_requests_resolve_to_the_documents_frame_folders():
    cfg = LmmsModelConfig("m", frames_root=f"/runs/{SLUG}")
    plan = plan_request(3, _request(3), DOCS, cfg)
    assert plan.frames == FolderManifest(f"/runs/{SLUG}/synthetic/synth_0001", N)
    assert (plan.index, plan.sample_id, plan.prompt, plan.until) == (3, "t/test/3", "prompt 3", ("\n\n",))
    other = {"t": {"test": [{"scene_id": "scene0011_00"}]}}
    keyed = LmmsModelConfig("m", frames_root=f"/runs/{SLUG}", scene_key="scene_id", dataset="scannet")
    assert plan_request(0, _request(0), other, keyed).frames.scene_dir == f"/runs/{SLUG}/scannet/scene0011_00"
    with pytest.raises(InvalidInputError, match="scene_key"):
        plan_request(0, _request(0), other, cfg)
    with pytest.raises(InvalidInputError, match="outside frames_root"):
        plan_request(0, _request(0), {"t": {"test": [{"dataset": "..", "scene_name": "x"}]}}, cfg)
    video = plan_request(0, _request(0, visual=lambda doc: ["/v/scene.mp4"]), DOCS, LmmsModelConfig("m", num_frames=8))
    assert video.frames == Mp4Uniform("/v/scene.mp4", 8, "round_full")
    with pytest.raises(InvalidInputError, match="one video file"):
        plan_request(0, _request(0, visual=lambda doc: ["a.png", "b.png"]), DOCS, LmmsModelConfig("m"))
    with pytest.raises(ConfigError, match="simple"):
        plan_request(0, ("ctx", lambda d: [], {}, 0, "t", "test")[:5], DOCS, cfg)  # a chat-style request


class _Frames:
    """A hashable frame request that counts its decodes."""

    loads: dict = {}

    def __init__(self, scene, fail=False):
        self.scene, self.fail = scene, fail

    def __hash__(self):
        return hash(self.scene)

    def __eq__(self, other):
        return isinstance(other, _Frames) and other.scene == self.scene

    def load(self):
        _Frames.loads[self.scene] = _Frames.loads.get(self.scene, 0) + 1
        if self.fail:
            raise DecodeError(f"cannot decode {self.scene}")
        return self.scene


class _Result:
    def __init__(self, text):
        self.text = text


def _plans(scenes, gens):
    from posevlm.eval.lmms.requests import PlannedRequest

    return [PlannedRequest(i, f"t/test/{i}", _Frames(s, fail=s == "bad"), f"q{i}", g, ("\n\n",))
            for i, (s, g) in enumerate(zip(scenes, gens))]


def test_answers_come_back_in_request_order_with_one_decode_per_scene():
    greedy, longer = GenerationSettings(max_new_tokens=4), GenerationSettings(max_new_tokens=8)
    scenes = ["a", "b", "a", "c", "b", "a"]
    plans = _plans(scenes, [greedy, greedy, longer, greedy, greedy, greedy])
    calls = []

    def generate_each(items, *, generation, sample_ids):
        calls.append((generation, sample_ids))
        return [_Result(f"{spec}:{prompt}\n\nignored") for prompt, spec in items]

    _Frames.loads = {}
    out = answer_requests(plans, generate_each, FrameCache(max_entries=4))
    assert out == [f"{s}:q{i}" for i, s in enumerate(scenes)]  # order kept, cut at "\n\n"
    assert _Frames.loads == {"a": 1, "b": 1, "c": 1}
    assert all(len({scenes[int(i.rsplit('/', 1)[1])] for i in ids}) == 1 for _, ids in calls)  # one scene per call
    assert {g for g, _ in calls} == {greedy, longer}


def test_failed_samples_raise_or_answer_empty():
    plans = _plans(["a", "bad", "a"], [GenerationSettings()] * 3)

    def generate_each(items, *, generation, sample_ids):
        return [SampleError("generation failed", sample_id=i) if p == "q2" else _Result("ok")
                for (p, _), i in zip(items, sample_ids)]

    with pytest.raises(DecodeError, match="t/test/1: cannot decode bad"):
        answer_requests(plans[:2], generate_each, FrameCache())
    with pytest.raises(SampleError, match="t/test/2: generation failed"):
        answer_requests(plans, generate_each, FrameCache())
    warned = []
    assert answer_requests(plans, generate_each, FrameCache(), on_error="empty", warn=warned.append) == ["ok", "", ""]
    assert sorted(w.split()[1] for w in warned) == ["t/test/1", "t/test/2"]


def test_pyproject_declares_the_lmms_eval_entry_point():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["lmms_eval.models"] == {"posevlm": "posevlm.eval.lmms:manifest"}
    assert any(req.startswith("lmms-eval==") for req in project["optional-dependencies"]["lmms"])


def test_lmms_eval_registry_resolves_and_validates_the_model_class():
    pytest.importorskip("lmms_eval")
    from lmms_eval.api.model import lmms
    from lmms_eval.models.registry_v2 import ModelRegistryV2

    from posevlm.eval.lmms import manifest
    from posevlm.eval.lmms.model import PosevlmLMM

    registry = ModelRegistryV2()
    registry.register_manifest(manifest())
    assert registry.get_model_class("posevlm") is PosevlmLMM  # imports it and checks subclass + is_simple
    assert issubclass(PosevlmLMM, lmms) and PosevlmLMM.is_simple


def test_the_model_answers_lmms_instances_with_pose_positions_and_refuses_likelihoods(world, tmp_path, monkeypatch):
    pytest.importorskip("lmms_eval")
    pytest.importorskip("transformers")
    from lmms_eval.api.instance import Instance
    from tiny_models import save_tiny_qwen2_5_vl

    from posevlm.eval.lmms.model import PosevlmLMM

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = PosevlmLMM(str(save_tiny_qwen2_5_vl(tmp_path / "tiny")), positions="pthw", dtype="float32",
                       frames_root=str(world / "sampled" / SLUG), min_pixels=3136, batch_size=2)
    docs = [json.loads(line) for line in (world / "bench.jsonl").read_text().splitlines()[:3]]
    model.task_dict = {"t": {"test": docs}}
    gen = {"max_new_tokens": 3, "temperature": 0, "do_sample": False, "until": ["\n\n"], "image_aspect_ratio": "pad"}
    meta = {"task": "t", "doc_id": 0, "repeats": 1}
    requests = [Instance("generate_until", (d["question"], dict(gen), lambda doc: [], i, "t", "test"), i, meta)
                for i, d in enumerate(docs)]
    answers = model.generate_until(requests)
    assert len(answers) == 3 and all(isinstance(a, str) and "\n\n" not in a for a in answers)
    assert answers == model.generate_until(requests[::-1])[::-1]  # greedy, order-independent
    assert model.ignored_generation_keys == {"image_aspect_ratio"}
    assert model.info["positions"]["spec"]["layout"] == "qwen2_5" and model.batch_size == 2
    with pytest.raises(ConfigError, match="generate_until tasks only"):
        model.loglikelihood([Instance("loglikelihood", ("ctx", " cont", lambda doc: [], 0, "t", "test"), 0, meta)])


# ------------------------------------------------------------------------------------------ the real CLI
TASK_YAML = """\
task: posevlm_tiny_vsibench
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_visual: !function utils.doc_to_visual
doc_to_text: !function utils.doc_to_text
doc_to_target: ground_truth
generation_kwargs:
  max_new_tokens: 16
  temperature: 0
  top_p: 1.0
  num_beams: 1
  do_sample: false
process_results: !function utils.process_results
metric_list:
  - metric: vsibench_overall
    aggregation: !function utils.aggregate_overall
    higher_is_better: true
  - metric: object_counting_mra
    aggregation: !function utils.aggregate_counting
    higher_is_better: true
lmms_eval_specific_kwargs:
  default:
    pre_prompt: ""
    mca_post_prompt: "Answer with the option's letter from the given choices directly."
    na_post_prompt: "Please answer the question using a single word or phrase."
metadata:
  - version: 0.0
"""
TASK_UTILS = '''\
"""A local copy of lmms-eval's vsibench task: its prompt, parsing and metrics; the frames come from posevlm."""
from lmms_eval.tasks.vsibench.utils import (  # noqa: F401
    vsibench_aggregate_object_counting_mra as aggregate_counting,
    vsibench_aggregate_overall as aggregate_overall,
    vsibench_doc_to_text as doc_to_text,
    vsibench_process_results as process_results,
)


def doc_to_visual(doc):
    return []  # --model posevlm reads <frames_root>/<dataset>/<scene_name>
'''
TYPES = ("object_counting", "object_rel_direction_easy", "object_rel_direction_medium", "object_rel_direction_hard")


@pytest.mark.slow
def test_lmms_eval_cli_runs_the_pose_aware_model_and_answers_as_posevlm_eval(world, tmp_path, monkeypatch):
    pytest.importorskip("lmms_eval")
    from tiny_models import save_tiny_qwen2_5_vl

    from posevlm.eval.lmms.requests import cut_at_stops as cut
    from posevlm.eval.prompts import get_prompt
    from posevlm.eval.run_store import RunStore
    from posevlm.eval.runner import EvalConfig, run_eval

    # a tiny Qwen2.5-VL whose mRoPE [4, 2, 2] leaves T 4 head dims under PTHW for PRoPE's T block
    model = save_tiny_qwen2_5_vl(tmp_path / "tiny", rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                                                     "mrope_section": [4, 2, 2]})
    records = [json.loads(line) for line in (world / "bench.jsonl").read_text().splitlines() if line.strip()]
    docs = [next(r for r in records if r["question_type"] == t) for t in TYPES]  # lmms' aggregate needs all RelDir
    (tmp_path / "bench.jsonl").write_text("".join(json.dumps(r) + "\n" for r in docs))
    task = tmp_path / "task"
    task.mkdir()
    (task / "test.jsonl").write_text("".join(json.dumps({k: r[k] for k in ("id", "dataset", "scene_name",
                                     "question_type", "question", "options", "ground_truth")}) + "\n" for r in docs))
    (task / "posevlm_tiny_vsibench.yaml").write_text(TASK_YAML.format(data=task / "test.jsonl"))
    (task / "utils.py").write_text(TASK_UTILS)
    # the entry point as pip installs it from pyproject.toml (an editable install made before it existed lacks it)
    ep = tmp_path / "ep" / "posevlm_lmms_entry_point-0.dist-info"
    ep.mkdir(parents=True)
    (ep / "METADATA").write_text("Metadata-Version: 2.1\nName: posevlm-lmms-entry-point\nVersion: 0\n")
    value = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["entry-points"]["lmms_eval.models"]
    (ep / "entry_points.txt").write_text("[lmms_eval.models]\n" + "".join(f"{k} = {v}\n" for k, v in value.items()))
    frames = world / "sampled" / SLUG
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ep.parent), os.environ.get("PYTHONPATH")]))}
    args = ",".join([f"pretrained={model}", "positions=pthw", "camera_attention=prope", f"frames_root={frames}",
                     "dtype=float32", "min_pixels=3136"])
    proc = subprocess.run([sys.executable, "-m", "lmms_eval", "--model", "posevlm", "--model_args", args, "--tasks",
                           "posevlm_tiny_vsibench", "--include_path", str(task), "--batch_size", "1",
                           "--output_path", str(tmp_path / "out"), "--log_samples"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    (results_file,) = (tmp_path / "out").rglob("*_results.json")
    results = json.loads(results_file.read_text())
    assert results["n-samples"]["posevlm_tiny_vsibench"]["effective"] == len(docs)
    scores = results["results"]["posevlm_tiny_vsibench"]
    assert 0.0 <= scores["vsibench_overall,none"] <= 1.0 and 0.0 <= scores["object_counting_mra,none"] <= 1.0
    (samples_file,) = (tmp_path / "out").rglob("*_samples_posevlm_tiny_vsibench.jsonl")
    samples = [json.loads(line) for line in samples_file.open()]
    lmms_answers = {s["vsibench_overall"]["id"]: s["filtered_resps"] for s in samples}
    # lmms-eval's own vsibench prompt is posevlm's `official` preset, character for character
    assert {s["vsibench_overall"]["id"]: s["input"] for s in samples} == {r["id"]: get_prompt("official").render(r)
                                                                          for r in docs}
    # the same model, frames (with their cameras), prompt and greedy decoding through posevlm's own runner
    config = EvalConfig(benchmark={"name": "synthetic_vsi", "source": str(tmp_path / "bench.jsonl")},
                        model={"backend": "hf", "name": "tiny", "model": str(model), "dtype": "float32",
                               "positions": "pthw", "camera_attention": "prope", "min_pixels": 3136},
                        frames={"source": "folder_manifest", "root": str(frames), "num_frames": N})
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert run_eval(config, tmp_path / "posevlm_run").ok
    # lmms-eval cuts at its `until` ("\n\n") and strips responses before scoring and logging them
    ours = {i: cut(r["raw_output"], ["\n\n"]).strip() for i, r in RunStore(tmp_path / "posevlm_run").scan().items()}
    assert lmms_answers == ours
