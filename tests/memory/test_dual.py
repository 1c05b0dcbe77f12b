"""DualMemory (Algorithm 1): parity with the list reference, gate range, shapes, gradients, fixed state size."""

from __future__ import annotations

import pytest
import torch

from posevlm.memory import DualMemory
from posevlm.memory.reference import dual_memory_reference


def memory(**kw) -> DualMemory:
    torch.manual_seed(kw.pop("seed", 0))
    kw.setdefault("zero_init", False)
    return DualMemory(8, 2, working_size=3, episodic_size=4, **kw)


@pytest.mark.parametrize("working,episodic,similarity", [(True, True, "flatten"), (True, True, "mean_token"),
                                                         (True, False, "flatten"), (False, True, "flatten")])
def test_algorithm_1_matches_the_list_reference(working, episodic, similarity):
    """12 steps (past both capacities): outputs and final memories equal the literal list implementation."""
    module = memory(working=working, episodic=episodic, similarity=similarity)
    steps = torch.randn(1, 12, 5, 8)
    out, state = module(steps)
    ref, w_list, e_list = dual_memory_reference(module, steps[0])
    torch.testing.assert_close(out[0], ref, atol=2e-6, rtol=1e-5)
    if working:
        assert len(state.working.as_list()) == len(w_list) == 3
        for got, want in zip(state.working.as_list(), w_list):
            assert torch.equal(got, want)  # W holds the last L_w inputs H_t themselves
    if episodic:
        assert len(state.episodic.as_list()) == len(e_list) == 4
        for got, want in zip(state.episodic.as_list(), e_list):
            torch.testing.assert_close(got, want, atol=2e-6, rtol=1e-5)


def test_gate_is_in_unit_interval_and_mixes_the_retrievals():
    module = memory()
    with torch.no_grad():
        module.gate[2].bias.fill_(30.0)  # gamma -> 1: the working-memory retrieval only
    steps = torch.randn(1, 6, 5, 8)
    _, state = module(steps[:, :5])
    m_w = module.working.retrieve(state.working, steps[:, 5])
    m_e = module.episodic.retrieve(state.episodic, steps[:, 5])
    gamma = module.gamma(m_w, m_e)
    assert bool(((gamma >= 0) & (gamma <= 1)).all())
    _, m, _ = module.step(state, steps[:, 5])
    torch.testing.assert_close(m, m_w)
    with torch.no_grad():
        module.gate[2].bias.fill_(-30.0)
    _, m, _ = module.step(state, steps[:, 5])
    torch.testing.assert_close(m, m_e)


def test_fresh_memory_is_the_identity_and_state_size_is_fixed():
    module = DualMemory(8, 2, working_size=3, episodic_size=4)  # zero_init: out_proj = 0
    steps = torch.randn(2, 20, 5, 8)
    out, state = module(steps)
    assert torch.equal(out, steps)
    assert state.working.entries.shape == (2, 3, 5, 8) and state.episodic.entries.shape == (2, 4, 5, 8)
    assert state.working.count.tolist() == [3, 3] and state.episodic.count.tolist() == [4, 4]


def test_gradients_reach_every_parameter_and_earlier_steps():
    module = memory()
    steps = torch.randn(2, 6, 5, 8, requires_grad=True)
    out, _ = module(steps)
    out[:, -1].pow(2).sum().backward()  # only the last step's output
    for name, param in module.named_parameters():
        assert param.grad is not None and bool(param.grad.abs().sum() > 0), name
    assert bool(steps.grad[:, 0].abs().sum() > 0)  # through the memories (backpropagation through time)


def test_detached_memory_stops_gradients_across_steps():
    module = memory(detach=True)
    steps = torch.randn(1, 6, 5, 8, requires_grad=True)
    out, _ = module(steps)
    out[:, -1].pow(2).sum().backward()
    assert torch.equal(steps.grad[:, :-1], torch.zeros_like(steps.grad[:, :-1]))
    assert bool(module.working.k_proj.weight.grad.abs().sum() > 0)  # the projections still learn
