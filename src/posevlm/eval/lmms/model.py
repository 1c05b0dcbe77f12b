"""``PosevlmLMM``: the lmms-eval ``simple`` model behind ``--model posevlm`` (see the package docstring).

It holds one ``HFBackend`` (the same loading, pose-aware positions, camera attention, batching and OOM retry
as ``posevlm eval --backend hf``) and a small ``FrameCache``; ``generate_until`` plans the requests
(``requests.plan_request``) and answers them (``requests.answer_requests``). Likelihood requests are refused:
posevlm's models are evaluated by generation.
"""

from __future__ import annotations

import os
from typing import Any

from lmms_eval.api.model import lmms
from loguru import logger

from posevlm.errors import ConfigError
from posevlm.eval.frames import FrameCache
from posevlm.eval.lmms.requests import LmmsModelConfig, answer_requests, plan_request

__all__ = ["PosevlmLMM"]


class PosevlmLMM(lmms):
    """lmms-eval model ``posevlm``: ``--model_args pretrained=<dir or hub id>[,frames_root=<slug folder>]
    [,positions=...][,camera_attention=...][,...]`` (keys: ``LmmsModelConfig``)."""

    is_simple = True

    def __init__(self, pretrained: str, **model_args: Any) -> None:
        super().__init__()
        from posevlm.eval.backends.hf import HFBackend

        args = {"pretrained": pretrained, **model_args}
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and args.get("device") is None:  # one process per GPU (accelerate / torchrun)
            import torch

            if torch.cuda.is_available():
                args["device"] = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
        self.config = LmmsModelConfig.from_model_args(args)
        self.backend = HFBackend(self.config.backend_config())
        self.cache = FrameCache(max_entries=2)
        self.ignored_generation_keys: set[str] = set()

    @property
    def device(self):
        return self.backend.device

    @property
    def batch_size(self) -> int:
        return self.backend.config.batch_size

    @property
    def info(self) -> dict[str, Any]:
        """What was loaded (the backend's info) and the plug-in's own options."""
        return {**self.backend.info, "lmms_model_args": self.config.to_dict()}

    def generate_until(self, requests) -> list[str]:
        plans = [plan_request(i, r.args, self.task_dict, self.config) for i, r in enumerate(requests)]
        new = {k for p in plans for k in p.ignored} - self.ignored_generation_keys
        if new:
            self.ignored_generation_keys |= new
            logger.warning(f"posevlm: gen_kwargs {sorted(new)} have no posevlm equivalent and are ignored")
        return answer_requests(plans, self.backend.generate_each, self.cache, on_error=self.config.on_error,
                               warn=logger.warning)

    def _refuse(self, requests) -> list:
        raise ConfigError("lmms-eval --model posevlm answers generate_until tasks only (posevlm's models are "
                          "evaluated by generation); this task asks for "
                          f"{getattr(requests[0], 'request_type', 'another request type') if requests else 'nothing'}",
                          field="tasks")

    def loglikelihood(self, requests) -> list:
        return self._refuse(requests)

    def generate_until_multi_round(self, requests) -> list:
        return self._refuse(requests)
