"""Camera attention inside one Qwen2.5-VL text attention layer (transformers 5.23, CPU fp32, sdpa): the patched
layer forward (posevlm.models.camera_attention) against the stock forward, prefill and decode.

What a model pays: prefill with per-token cameras (projections, RoPE, camera transform of q/k/v in place,
cache update, SDPA, camera transform of o, o_proj); decode of a generated (text) token, which has the identity
camera and runs no transform; and, for streaming use, a decode step whose token has a camera.

    python benchmarks/attention/qwen_layer_bench.py [--threads 1] [--length 3128] [--cache 4096]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from camera_attention_bench import interleaved_ms, make_cameras  # noqa: E402

from benchmarks._common import environment  # noqa: E402
from posevlm.attention import CameraDims, build_camera_transform  # noqa: E402
from posevlm.attention import pose_distance_table  # noqa: E402
from posevlm.models.camera_attention import SLOPES_NAME, CameraContext, patch_attention_layer  # noqa: E402
from posevlm.models.families import model_families  # noqa: E402
from posevlm.positions import MultiAxisRotary  # noqa: E402

HIDDEN, HEADS, KV_HEADS, HEAD_DIM = 2048, 16, 2, 128


def make_layer():
    from transformers import Qwen2_5_VLTextConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VLAttention

    cfg = Qwen2_5_VLTextConfig(hidden_size=HIDDEN, num_attention_heads=HEADS, num_key_value_heads=KV_HEADS,
                               num_hidden_layers=1, rope_parameters={"rope_type": "default", "rope_theta": 1e6,
                                                                     "mrope_section": [16, 24, 24]})
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    stock = Qwen2_5_VLAttention(cfg, layer_idx=0).eval()
    patched, biased = copy.deepcopy(stock), copy.deepcopy(stock)
    family = model_families.get("qwen2_5_vl")
    patch_attention_layer(patched, family)
    patch_attention_layer(biased, family, bias="learned")  # per-layer slopes
    with torch.no_grad():
        getattr(biased, SLOPES_NAME).copy_(torch.linspace(0.1, 1.0, HEADS))
    return cfg, stock, patched, biased


def rotary(length: int, start: int = 0):
    """cos/sin of a THW rotary whose T slots (0-15) are unrotated (they carry the camera block)."""
    inv_freq = 1.0 / (1e6 ** (torch.arange(0, HEAD_DIM, 2, dtype=torch.float32) / HEAD_DIM))
    slot_axis = [-1] * 16 + [1] * 24 + [2] * 24
    pos = torch.arange(start, start + length, dtype=torch.float32)[None, None].expand(3, 1, -1)
    return MultiAxisRotary(inv_freq, slot_axis)(pos)


def main() -> None:
    from transformers import DynamicCache

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--length", type=int, default=3128)
    parser.add_argument("--cache", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg, stock, patched, biased = make_layer()
    dims = CameraDims.from_rotary_slots(range(16), HEAD_DIM)
    g = torch.Generator().manual_seed(1)
    rows = []
    with torch.inference_mode():
        # prefill: every token but the first 10 has one of 16 tubelet cameras
        x = torch.randn(1, args.length, HIDDEN, generator=g)
        cams, ci = make_cameras(args.length)
        ctx = CameraContext(build_camera_transform(cams, ci, dims, "prope", validate=False), None)
        pe = rotary(args.length)
        plain = lambda: stock(hidden_states=x, attention_mask=None, position_embeddings=pe)  # noqa: E731
        ours = lambda: patched(hidden_states=x, attention_mask=None, position_embeddings=pe,  # noqa: E731
                               posevlm_camera=ctx)
        same = lambda: patched(hidden_states=x, attention_mask=None, position_embeddings=pe)  # noqa: E731
        assert torch.equal(same()[0], plain()[0])  # no context: exactly the stock layer
        # pose-distance bias (factored: 16 extra q/k head dims; pose_bias_bench.py compares it with the dense mask)
        w2c = torch.linalg.inv(cams.double()).float()  # any rigid cameras will do for timing
        ctx_bias = CameraContext(ctx.transform, pose_distance_table(w2c), ci)
        with_bias = lambda: biased(hidden_states=x, attention_mask=None, position_embeddings=pe,  # noqa: E731
                                   posevlm_camera=ctx_bias)
        t = interleaved_ms({"plain": plain, "camera": ours, "bias": with_bias}, args.repeats, warmup=1)
        rows.append(("prefill L=%d, 16 cameras" % args.length, t["plain_ms"], t["camera_ms"], t["camera_ratio"],
                     1.10))
        rows.append(("  + pose-distance bias", t["plain_ms"], t["bias_ms"], t["bias_ratio"], 1.3))

        # decode one token against a cache of `cache` tokens (cache cropped back before every call, untimed)
        prompt = torch.randn(1, args.cache, HIDDEN, generator=g)
        caches = {}
        for name, layer in (("stock", stock), ("patched", patched)):
            cache = DynamicCache(config=cfg)
            layer(hidden_states=prompt, attention_mask=None, position_embeddings=rotary(args.cache),
                  past_key_values=cache)
            caches[name] = cache
        step = torch.randn(1, 1, HIDDEN, generator=g)
        pe1 = rotary(1, args.cache)
        cams1, ci1 = make_cameras(args.cache + 1)
        tf1 = build_camera_transform(cams1, ci1, dims, "prope", validate=False).tokens(slice(args.cache, None))

        def crop(name):
            def restore():
                extra = caches[name].get_seq_length() - args.cache
                if extra > 0:
                    caches[name].crop(-extra)
            return restore

        def run(layer, name, context=None):
            return lambda: layer(hidden_states=step, attention_mask=None, position_embeddings=pe1,
                                 past_key_values=caches[name], posevlm_camera=context) if context is not None \
                else layer(hidden_states=step, attention_mask=None, position_embeddings=pe1,
                           past_key_values=caches[name])

        crop("stock")(), crop("patched")()
        assert torch.equal(run(stock, "stock")()[0], run(patched, "patched")()[0])  # text token: exactly stock
        t = interleaved_ms({"plain": (crop("stock"), run(stock, "stock")),
                            "text": (crop("patched"), run(patched, "patched")),
                            "camera": (crop("patched"), run(patched, "patched", CameraContext(tf1, None)))},
                           args.repeats * 20, warmup=5)
        rows.append((f"decode text token vs {args.cache}", t["plain_ms"], t["text_ms"], t["text_ratio"], 1.2))
        rows.append((f"decode camera token vs {args.cache}", t["plain_ms"], t["camera_ms"], t["camera_ratio"], 1.2))
    print(f"{environment()}; one Qwen2.5-VL text attention layer (hidden {HIDDEN}, {HEADS} heads, {KV_HEADS} KV "
          f"heads, head_dim {HEAD_DIM}), sdpa, fp32; medians of interleaved rounds, ratio = median per-round ratio")
    print(f"{'case':<32}{'stock ms':>10}{'patched ms':>12}{'ratio':>8}{'target':>8}")
    for case, a, b, r, target in rows:
        print(f"{case:<32}{a:>10.3f}{b:>12.3f}{r:>8.3f}{'<=' + str(target) if target == target else '—':>8}")
    print("the bias row: camera transform + learned-slope pose-distance bias in factored form (16 cameras -> 16 "
          "extra q/k/v head dims); benchmarks/attention/pose_bias_bench.py sets it against the dense float mask")


if __name__ == "__main__":
    main()
