"""VLM²: per-step cost of the dual memory vs steps seen, and the VLM² configuration's overhead over its base.

Three parts (CPU, float32, random weights, one thread; medians of the process's CPU time after warm-up, which on a
shared machine is much steadier than wall time):

A. Memory (Algorithm 1, ``DualMemory.step``: retrieval from both memories, gate, working + episodic update) at
   8, 64 and 512 steps seen, paper capacities L_w = 8, L_e = 32. A step is one tubelet (n tokens of width D).
   The steps run in order from an empty memory; the timed steps are the ``--repeats`` that follow each checkpoint.
   Next to it, the list-based reference (``posevlm.memory.reference``: recomputes every stored entry's keys and
   values each step) at the same fill, to show what caching the projections saves.
B. Prefill forward of a small model (text 512 wide x 4 layers, vision 128 x 4, VGGT 64 x 4 with camera and point
   heads; 16 frames of 112 x 168 -> 8 tubelets of 4 x 6 tokens): base compositions (stock Qwen = Spatial-MLLM
   without connector; Spatial-MLLM ``add``) vs their VLM² configurations, plus the parts (VGGT with / without the
   point head, the stage alone).
C. Real size, counted not timed (``torch.utils.flop_counter`` on the meta device): FLOPs of the stage and of
   VGGT-1B's point and camera heads for one 16-frame 644 x 476 video (T = 8, n = 17 x 23 = 391, D = 2048,
   DD = 2048), next to the estimates in ``spatial_mllm/connectors.py`` for the Qwen2.5-VL-3B prefill of that prompt
   (about 19 TFLOP) and the released ``add`` connector (about 1.9 TFLOP).

    python benchmarks/models/vlm2_memory_bench.py [--dim 512] [--tokens 96] [--repeats 10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "models")]

import torch  # noqa: E402

from benchmarks._common import environment  # noqa: E402
from posevlm.memory import DualMemory, VideoSteps, VLM2Config, VLM2Stage  # noqa: E402
from posevlm.memory.reference import (  # noqa: E402
    episodic_update_reference,
    retrieve_reference,
    working_update_reference,
)

CHECKPOINTS = (8, 64, 512)


def clock() -> float:
    """Seconds of CPU time of this process: on a machine shared with other jobs, far steadier than wall time (the
    benchmark runs single-threaded, so CPU time is the time the work itself takes)."""
    return time.process_time()


def timed(fn, repeats: int, warmup: int = 1) -> float:
    """Median CPU milliseconds of ``fn()``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = clock()
        fn()
        times.append((clock() - t0) * 1e3)
    return statistics.median(times)


def timed_round_robin(fns: dict, repeats: int, warmup: int = 1) -> dict:
    """Median CPU milliseconds of each ``fns[name]()``, the variants interleaved so slow phases hit all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t0 = clock()
            fn()
            times[name].append((clock() - t0) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


# ---- A: memory step vs steps seen -----------------------------------------------------------------------------
def memory_scaling(dim: int, tokens: int, heads: int, repeats: int,
                   checkpoints: tuple[int, ...] = CHECKPOINTS) -> tuple[list[dict], float]:
    torch.manual_seed(0)
    memory = DualMemory(dim, heads, working_size=8, episodic_size=32, zero_init=False).eval()
    state = memory.init_state(1, tokens)
    rows, seen = [], 0
    g = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        for checkpoint in checkpoints:
            while seen < checkpoint:
                _, _, state = memory.step(state, torch.randn(1, tokens, dim, generator=g))
                seen += 1
            times = []
            for _ in range(repeats):
                h = torch.randn(1, tokens, dim, generator=g)
                t0 = clock()
                _, _, state = memory.step(state, h)
                times.append((clock() - t0) * 1e3)
                seen += 1
            bank_mib = sum(t.numel() * t.element_size() for t in state.state_dict().values()) / 2 ** 20
            rows.append({"steps_seen": checkpoint, "step_ms": statistics.median(times),
                         "working": int(state.working.count[0]), "episodic": int(state.episodic.count[0]),
                         "state_mib": bank_mib})
        # the list reference at full memories (8 + 32 entries): one step recomputes every entry's keys and values
        w_list = [torch.randn(tokens, dim, generator=g) for _ in range(8)]
        e_list = [torch.randn(tokens, dim, generator=g) for _ in range(32)]
        h = torch.randn(tokens, dim, generator=g)

        def reference_step():
            m_w = retrieve_reference(memory.working, w_list, h)
            m_e = retrieve_reference(memory.episodic, e_list, h)
            gamma = torch.sigmoid(memory.gate(torch.cat([m_w, m_e], dim=-1)))
            m = gamma * m_w + (1 - gamma) * m_e
            working_update_reference(w_list, h, 8)
            episodic_update_reference(e_list, m, 32)
            return h + memory.out_proj(m)

        reference_ms = timed(reference_step, repeats)
    return rows, reference_ms


# ---- B: small model prefill -----------------------------------------------------------------------------------
def small_models():
    """(Qwen2.5-VL, VGGT, stage settings) of part B, random weights."""
    import transformers

    from posevlm.spatial import VGGT, VGGTConfig

    text = {"vocab_size": 1024, "hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 4,
            "num_attention_heads": 8, "num_key_value_heads": 2, "max_position_embeddings": 4096, "pad_token_id": 0,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [8, 12, 12]}}
    vision = {"depth": 4, "hidden_size": 128, "intermediate_size": 256, "num_heads": 4, "patch_size": 14,
              "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56, "fullatt_block_indexes": [3],
              "out_hidden_size": 512, "tokens_per_second": 2}
    config = transformers.Qwen2_5_VLConfig(text_config=text, vision_config=vision, image_token_id=1001,
                                           video_token_id=1002, vision_start_token_id=1003, vision_end_token_id=1004)
    torch.manual_seed(0)
    qwen = transformers.Qwen2_5_VLForConditionalGeneration(config).eval()
    vggt = VGGT(VGGTConfig.tiny(embed_dim=64, depth=4, num_heads=4, dpt_layers=(0, 1, 2, 3), dpt_features=32,
                                heads=("camera", "point"))).eval()
    return qwen, vggt, {"num_heads": 8, "zero_init": False}


def model_overhead(repeats: int) -> dict:
    import copy

    from posevlm.models.spatial_mllm import SpatialMLLM
    from posevlm.models.vlm2 import from_spatial_mllm
    from spatial_mllm_tiny import make_batch

    qwen, vggt, stage = small_models()
    kwargs, frames = make_batch(qwen.config, [(20, [(16, 112, 168)], 20)])
    out = {"tokens": int(kwargs["input_ids"].shape[1]), "video_tokens": int((kwargs["input_ids"] == 1002).sum())}
    with torch.inference_mode():
        fns = {}
        for connector in ("none", "add"):
            base = SpatialMLLM.compose(copy.deepcopy(qwen), vggt, connector, seed=0).eval()
            stock = copy.deepcopy(base)  # its own Qwen: the VLM² models below take over the base's vision hook
            fns[f"base_{connector}"] = lambda m=stock: m(**kwargs, video_tchw=frames)
            model = from_spatial_mllm(base, stage, spatial_encoder=vggt, seed=0)
            fns[f"vlm2_{connector}"] = lambda m=model: m(**kwargs, video_tchw=frames)
            off = from_spatial_mllm(copy.deepcopy(stock), VLM2Config.off(), spatial_encoder=vggt)
            fns[f"vlm2_off_{connector}"] = lambda m=off: m(**kwargs, video_tchw=frames)
        x = frames[0][None]
        fns["vggt_camera"] = lambda: vggt(x, heads=("camera",), layers=(-1,))
        fns["vggt_camera_point"] = lambda: vggt(x, heads=("camera", "point"), layers=(-1,))
        cfg = model.config.vlm2
        t, n = 8, 24
        steps = VideoSteps(torch.randn(t, n, cfg.llm_dim), torch.randn(t, n, cfg.merged_dim),
                           torch.randn(t, 2, cfg.view_dim), torch.randn(t, n, 3), torch.ones(t, n, dtype=torch.bool))
        fns["stage"] = lambda: model.vlm2([steps])
        out.update({f"{name}_ms": ms for name, ms in timed_round_robin(fns, repeats).items()})
    return out


# ---- C: real-size FLOPs on the meta device ----------------------------------------------------------------------
def real_size_flops() -> dict:
    from torch.utils.flop_counter import FlopCounterMode

    from posevlm.spatial.vggt import VGGT, VGGTConfig

    t, n, s, hw = 8, 17 * 23, 16, (476, 644)
    out = {}
    with torch.device("meta"):
        stage = VLM2Stage(VLM2Config())
        steps = VideoSteps(torch.randn(t, n, 2048), torch.randn(t, n, 8 * 2048), torch.randn(t, 2, 2048),
                           torch.randn(t, n, 3), torch.ones(t, n, dtype=torch.bool))
        for name in ("injection", "alignment", "fusion", "memory"):
            out[f"{name}_params_m"] = sum(p.numel() for p in getattr(stage, name).parameters()) / 1e6
        with FlopCounterMode(display=False) as counter:
            stage([steps])
        out["stage_tflop"] = counter.get_total_flops() / 1e12
        cfg = VGGTConfig.vggt_1b(heads=("camera", "point"))
        vggt = VGGT(cfg)
        p = (hw[0] // 14) * (hw[1] // 14)
        feats = {i: torch.randn(1, s, 5 + p, 2048) for i in cfg.dpt_layers}
        with FlopCounterMode(display=False) as counter:
            vggt.point_head(feats, hw, 5, 8)
        out["point_head_tflop"] = counter.get_total_flops() / 1e12
        with FlopCounterMode(display=False) as counter:
            vggt.camera_head(torch.randn(1, s, 2048), 4)
        out["camera_head_tflop"] = counter.get_total_flops() / 1e12
    out["llm_prefill_tflop_spec"], out["add_connector_tflop_spec"] = 19.0, 1.9
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dim", type=int, default=512, help="D of part A")
    parser.add_argument("--tokens", type=int, default=96, help="n tokens per step of part A")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--checkpoints", type=int, nargs="+", default=CHECKPOINTS, help="steps seen of part A")
    parser.add_argument("--skip", nargs="*", default=(), choices=("A", "B", "C"))
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU time is measured)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(environment() + ", timings: median CPU time of this process")
    result: dict = {}
    if "A" not in args.skip:
        rows, reference_ms = memory_scaling(args.dim, args.tokens, args.heads, args.repeats, tuple(args.checkpoints))
        result["memory"] = {"dim": args.dim, "tokens": args.tokens, "rows": rows,
                            "reference_full_step_ms": reference_ms}
        print(f"\nA. DualMemory.step, D={args.dim}, n={args.tokens}, L_w=8, L_e=32 (median of {args.repeats})")
        print("steps_seen  step_ms  ratio_to_8  working  episodic  state_MiB")
        for row in rows:
            print(f"{row['steps_seen']:>10}  {row['step_ms']:7.2f}  {row['step_ms'] / rows[0]['step_ms']:10.2f}  "
                  f"{row['working']:>7}  {row['episodic']:>8}  {row['state_mib']:9.2f}")
        print(f"list reference, one step at full memories: {reference_ms:.1f} ms "
              f"({reference_ms / rows[-1]['step_ms']:.1f}x the banked step)")
    if "B" not in args.skip:
        b = model_overhead(max(3, args.repeats // 2))
        result["overhead"] = b
        print(f"\nB. prefill forward, small model, {b['tokens']} tokens ({b['video_tokens']} video), ms (median)")
        for connector in ("none", "add"):
            base = b[f"base_{connector}_ms"]
            print(f"connector {connector:4s}: base {base:8.1f}  VLM2 {b[f'vlm2_{connector}_ms']:8.1f} "
                  f"({b[f'vlm2_{connector}_ms'] / base:.2f}x)  VLM2 all off {b[f'vlm2_off_{connector}_ms']:8.1f} "
                  f"({b[f'vlm2_off_{connector}_ms'] / base:.2f}x)")
        print(f"parts: VGGT camera {b['vggt_camera_ms']:.1f}, VGGT camera + point {b['vggt_camera_point_ms']:.1f}, "
              f"stage alone {b['stage_ms']:.1f}")
    if "C" not in args.skip:
        c = real_size_flops()
        result["real_size"] = c
        extra = c["stage_tflop"] + c["point_head_tflop"] + c["camera_head_tflop"]
        print("\nC. real size, one 16-frame 644x476 video (T=8, n=391, D=2048), TFLOP counted on the meta device")
        print(f"stage {c['stage_tflop']:.2f} (params M: " + ", ".join(
            f"{k[:-9]} {v:.1f}" for k, v in c.items() if k.endswith("_params_m")) + ")")
        print(f"VGGT point head {c['point_head_tflop']:.2f}, camera head {c['camera_head_tflop']:.3f}")
        print(f"VLM2 extra {extra:.2f} vs Qwen2.5-VL-3B prefill ~{c['llm_prefill_tflop_spec']:.0f} "
              f"({extra / c['llm_prefill_tflop_spec']:.2f}x) and add connector ~{c['add_connector_tflop_spec']}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
