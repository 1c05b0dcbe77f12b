"""posevlm's pose-aware Qwen-VL models as an lmms-eval model, through lmms-eval's documented plug-in hook.

lmms-eval (>= 0.7) loads model manifests from the Python entry-point group ``lmms_eval.models``; posevlm
declares (``pyproject.toml``)::

    [project.entry-points."lmms_eval.models"]
    posevlm = "posevlm.eval.lmms:manifest"

so, with ``pip install 'posevlm[lmms]'``::

    lmms-eval --model posevlm \\
        --model_args pretrained=Qwen/Qwen2.5-VL-3B-Instruct,positions=pthw,camera_attention=prope,frames_root=runs/sampled/<slug> \\
        --tasks vsibench --batch_size 1 --output_path runs/lmms

runs lmms-eval's own task (prompt, parsing, metrics) with posevlm's backend answering from the frames
``posevlm sample`` selected, cameras from their manifests. ``requests.py`` turns requests into frames,
prompts and generation settings (``LmmsModelConfig`` lists every ``--model_args`` key); ``model.py`` is the
``lmms`` subclass. Only this package imports lmms-eval, and only when lmms-eval asks for the model.
"""

from __future__ import annotations

__all__ = ["MODEL_CLASS_PATH", "manifest"]

#: The lmms-eval ``simple`` model class (imported by lmms-eval's registry when ``--model posevlm`` is used).
MODEL_CLASS_PATH = "posevlm.eval.lmms.model.PosevlmLMM"


def manifest():
    """The ``lmms_eval.models`` entry-point payload: a ``ModelManifest`` for ``--model posevlm``."""
    from lmms_eval.models.registry_v2 import ModelManifest

    from posevlm.eval.lmms.requests import MODEL_ID

    return ModelManifest(model_id=MODEL_ID, simple_class_path=MODEL_CLASS_PATH)
