"""Position-plan build time vs transformers' ``get_rope_index`` on a realistic prefill batch.

Batch of 8 samples, each: a text prompt, two 16-frame videos at 644x476 (grid (8, 34, 46) -> 3,128 tokens
each) and a question; left padding (prompt lengths differ), L ~ 6,350. Timed: ``build_token_map`` +
``build_position_plan`` (ours, token map included) against ``Qwen2_5_VLModel.get_rope_index`` on a tiny random
config (the method's cost does not depend on the model size).

Targets: stock plan <= 1.0x the reference; PTHW including the pose index (16 cameras per video) <= 1.5x.

    python benchmarks/positions/plan_bench.py [--repeats 20] [--videos-per-sample 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from benchmarks._common import environment, median_ms  # noqa: E402
from posevlm.geometry import axis_angle_to_matrix, se3_from_Rt  # noqa: E402
from posevlm.positions import PositionSpec, build_position_plan, build_token_map  # noqa: E402

VISION_START, VISION_END, IMAGE_ID, VIDEO_ID = 100, 101, 102, 103
GRID = (8, 34, 46)


def make_batch(batch: int, videos: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    rows, types = [], []
    n_tok = GRID[0] * (GRID[1] // 2) * (GRID[2] // 2)
    for b in range(batch):
        ids, tt = [], []
        for _ in range(videos):
            n_text = int(torch.randint(10, 60, (1,), generator=g))
            ids += torch.randint(1, 90, (n_text,), generator=g).tolist() + [VISION_START] + [VIDEO_ID] * n_tok
            ids += [VISION_END]
            tt += [0] * (n_text + 1) + [2] * n_tok + [0]
        ids += torch.randint(1, 90, (30,), generator=g).tolist()
        tt += [0] * 30
        rows.append(ids)
        types.append(tt)
    length = max(map(len, rows))
    input_ids = torch.tensor([[0] * (length - len(r)) + r for r in rows])
    mm = torch.tensor([[0] * (length - len(t)) + t for t in types])
    mask = torch.tensor([[0] * (length - len(r)) + [1] * len(r) for r in rows])
    grids = torch.tensor([GRID] * (batch * videos))
    spg = torch.full((batch * videos,), 1.0)
    rot = axis_angle_to_matrix(torch.randn(batch * videos, 16, 3, generator=g) * 0.5)
    w2c = se3_from_Rt(rot, torch.randn(batch * videos, 16, 3, generator=g) * 2.0).to(torch.float32)
    return input_ids, mm, mask, grids, spg, w2c


def reference_model():
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLModel

    cfg = Qwen2_5_VLConfig(
        text_config={"vocab_size": 128, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "num_key_value_heads": 1,
                     "rope_parameters": {"rope_type": "default", "rope_theta": 1e6,
                                         "mrope_section": [2, 3, 3]}},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2,
                       "patch_size": 14,
                       "spatial_merge_size": 2, "temporal_patch_size": 2, "out_hidden_size": 32,
                       "tokens_per_second": 2, "fullatt_block_indexes": [0], "window_size": 56},
        image_token_id=IMAGE_ID, video_token_id=VIDEO_ID, vision_start_token_id=VISION_START,
        vision_end_token_id=VISION_END)
    return Qwen2_5_VLModel(cfg).eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--videos-per-sample", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    import transformers

    torch.manual_seed(0)
    input_ids, mm, mask, grids, spg, w2c = make_batch(args.batch, args.videos_per_sample)
    model = reference_model()
    stock, pthw = PositionSpec(tokens_per_second=2), PositionSpec(pose="scalar", next_segment="max_plus_one")

    def ref():
        return model.get_rope_index(input_ids, mm, None, grids, second_per_grid_ts=spg, attention_mask=mask)

    def ours(spec, cams=None):
        tm = build_token_map(input_ids, attention_mask=mask, mm_token_type_ids=mm, video_grid_thw=grids)
        return build_position_plan(tm, spec, second_per_grid_ts=spg, w2c_opencv=cams)

    with torch.inference_mode():
        pos, delta = ref()
        plan = ours(stock)
        assert torch.equal(plan.rows.long(), pos) and torch.equal(plan.rope_deltas, delta), "parity broken"
        ref_ms = median_ms(ref, repeats=args.repeats)
        stock_ms = median_ms(lambda: ours(stock), repeats=args.repeats)
        pthw_ms = median_ms(lambda: ours(pthw, w2c), repeats=args.repeats)
    result = {"batch": args.batch, "videos_per_sample": args.videos_per_sample, "L": int(input_ids.shape[1]),
              "grid": list(GRID), "ref_ms": ref_ms, "stock_ms": stock_ms, "pthw_ms": pthw_ms,
              "stock_ratio": stock_ms / ref_ms, "pthw_ratio": pthw_ms / ref_ms,
              "targets": {"stock_ratio": 1.0, "pthw_ratio": 1.5}}
    print(f"{environment()}, transformers {transformers.__version__}, "
          f"median of {args.repeats} after 3 warmup")
    print(f"batch {args.batch} x {args.videos_per_sample} videos of grid {GRID}, L = {result['L']}")
    print(f"{'plan':<26}{'ms':>10}{'ratio(ours/ref)':>18}{'target':>8}")
    print(f"{'transformers get_rope_index':<26}{ref_ms:>10.2f}{'1.00':>18}{'':>8}")
    print(f"{'stock (token map + plan)':<26}{stock_ms:>10.2f}{result['stock_ratio']:>18.3f}{'<=1.0':>8}")
    print(f"{'pthw incl. pose index':<26}{pthw_ms:>10.2f}{result['pthw_ratio']:>18.3f}{'<=1.5':>8}")
    if args.json:
        print(json.dumps(result))


if __name__ == "__main__":
    main()
