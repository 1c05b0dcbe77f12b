"""Working / episodic memory banks: FIFO order and capacity, similarity replacement (hand-worked), Algorithm 1
list semantics as the oracle, per-stream isolation, fixed size."""

from __future__ import annotations

import pytest
import torch

from posevlm.memory import EpisodicMemory, WorkingMemory, fifo_slot, most_similar, replacement_slot, write_slot
from posevlm.memory.reference import episodic_update_reference, working_update_reference


def tagged(value: float, n: int = 2, d: int = 4) -> torch.Tensor:
    """A (1, n, D) step whose every entry is ``value`` (its tag)."""
    return torch.full((1, n, d), float(value))


def tags(bank, stream: int = 0) -> list[float]:
    return [float(e[0, 0]) for e in bank.as_list(stream)]


def test_fifo_slot_hand_worked():
    """L = 3: not full -> the next free slot; full -> the slot of the oldest entry (smallest stamp)."""
    count = torch.tensor([0, 2, 3])
    stamps = torch.tensor([[-1, -1, -1], [0, 1, -1], [5, 3, 4]])
    assert fifo_slot(count, stamps, 3).tolist() == [0, 2, 1]


def test_write_slot_is_out_of_place_and_skips_inactive_streams():
    stored = torch.zeros(3, 4, 2)
    new = torch.ones(3, 2)
    out = write_slot(stored, new, torch.tensor([0, 3, 1]), torch.tensor([True, True, False]))
    assert out[0, 0].tolist() == [1, 1] and out[1, 3].tolist() == [1, 1] and out[2].abs().sum() == 0
    assert out.sum() == 4 and stored.abs().sum() == 0  # the input bank is never modified


def test_working_memory_is_fifo_with_capacity():
    memory = WorkingMemory(4, 2, capacity=3)
    bank = memory.empty(1, 2)
    reference: list[float] = []
    for value in range(1, 9):
        bank = memory.update(bank, tagged(value), torch.tensor([True]))
        reference = working_update_reference(reference, float(value), 3)
        assert tags(bank) == reference
        assert int(bank.count[0]) == min(value, 3)
        assert bank.entries.shape == (1, 3, 2, 4)  # fixed size whatever the number of steps
    assert tags(bank) == [6.0, 7.0, 8.0]  # the last L_w, oldest first


def test_replacement_slot_hand_worked():
    """Full -> the victim's slot; not full -> the next free slot."""
    assert replacement_slot(torch.tensor([4, 2]), torch.tensor([1, 0]), 4).tolist() == [1, 2]


def test_similarity_replacement_replaces_the_most_similar_entry():
    """Hand-worked, n = 1, D = 2, L_e = 3: E = [e0 = (1, 0), e1 = (0, 1), e2 = (1, 1)].
    new = (0.875, 0.125): cos = 0.990, 0.141, 0.800 -> e0 goes: [e1, e2, new].
    new = (0.25, 1.0): cos = 0.243, 0.970, 0.857 -> e1 goes: [e0, e2, new]."""
    memory = EpisodicMemory(2, 1, capacity=3)
    e = [torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[0.0, 1.0]]]), torch.tensor([[[1.0, 1.0]]])]
    on = torch.tensor([True])
    bank = memory.empty(1, 1)
    for entry in e:
        bank = memory.update(bank, entry, on)
    assert [x.tolist() for x in bank.as_list()] == [[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 1.0]]]
    first = memory.update(bank, torch.tensor([[[0.875, 0.125]]]), on)
    assert [x.tolist() for x in first.as_list()] == [[[0.0, 1.0]], [[1.0, 1.0]], [[0.875, 0.125]]]
    second = memory.update(bank, torch.tensor([[[0.25, 1.0]]]), on)
    assert [x.tolist() for x in second.as_list()] == [[[1.0, 0.0]], [[1.0, 1.0]], [[0.25, 1.0]]]
    assert int(first.count[0]) == int(second.count[0]) == 3


def test_similarity_modes_differ_and_ties_take_the_first():
    """n = 2 tokens: flatten compares token by token, mean_token compares the mean token. Entry A = [(1,0),(0,1)],
    B = [(0,1),(1,0)] (same mean), new = [(1,0),(0,1)]: flatten -> A (cos 1 vs 0); mean_token -> a tie, A first."""
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    b = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    entries = torch.stack([b, a])[None]  # B first
    count = torch.tensor([2])
    new = a[None]
    assert most_similar(entries, count, new, "flatten").tolist() == [1]
    assert most_similar(entries, count, new, "mean_token").tolist() == [0]  # tie: the lowest slot
    # with stamps, a tie goes to the entry earliest in Algorithm 1's list (slot 1 was written first here)
    assert most_similar(entries, count, new, "mean_token", torch.tensor([[7, 2]])).tolist() == [1]
    # unfilled rows never win, even if they would be more similar
    padded = torch.cat([entries, a[None, None]], dim=1)
    assert most_similar(padded, count, torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]), "flatten").tolist() == [0]


@pytest.mark.parametrize("similarity", ["flatten", "mean_token"])
def test_episodic_memory_matches_the_list_reference(similarity):
    torch.manual_seed(0)
    memory = EpisodicMemory(6, 2, capacity=4, similarity=similarity)
    bank = memory.empty(1, 3)
    reference: list[torch.Tensor] = []
    for _ in range(15):
        entry = torch.randn(1, 3, 6)
        bank = memory.update(bank, entry, torch.tensor([True]))
        reference = episodic_update_reference(reference, entry[0], 4, similarity)
        assert len(bank.as_list()) == len(reference)
        for got, want in zip(bank.as_list(), reference):
            assert torch.equal(got, want)


def test_streams_keep_separate_banks():
    """Two streams in one batch: updating with different entries, one of them inactive at some steps, gives each
    the bank it would have alone; keys and values are the memory's projections of the stored entries."""
    torch.manual_seed(1)
    memory = EpisodicMemory(4, 2, capacity=3)
    both = memory.empty(2, 2)
    alone = [memory.empty(1, 2), memory.empty(1, 2)]
    for step in range(7):
        entry = torch.randn(2, 2, 4)
        active = torch.tensor([True, step % 3 != 1])
        both = memory.update(both, entry, active)
        for s in range(2):
            if bool(active[s]):
                alone[s] = memory.update(alone[s], entry[s:s + 1], torch.tensor([True]))
    for s in range(2):
        mine = both.select(slice(s, s + 1))
        assert int(mine.count[0]) == int(alone[s].count[0])
        for got, want in zip(mine.as_list(), alone[s].as_list()):
            assert torch.equal(got, want)
        k, v = memory.project(mine.entries)
        filled = int(mine.count[0])
        torch.testing.assert_close(mine.keys[:, :filled], k[:, :filled])
        torch.testing.assert_close(mine.values[:, :filled], v[:, :filled])


def test_retrieval_of_an_empty_bank_is_the_query_and_ignores_unfilled_rows():
    torch.manual_seed(2)
    memory = WorkingMemory(4, 2, capacity=3)
    query = torch.randn(2, 5, 4)
    assert torch.equal(memory.retrieve(memory.empty(2, 5), query), query)
    bank = memory.update(memory.empty(2, 5), torch.randn(2, 5, 4), torch.tensor([True, True]))
    junk = type(bank)(bank.entries, bank.keys.clone(), bank.values.clone(), bank.stamps, bank.count)
    junk.keys[:, 1:] = 1e3  # garbage in unfilled rows must not matter
    junk.values[:, 1:] = -7.0
    torch.testing.assert_close(memory.retrieve(junk, query), memory.retrieve(bank, query))
    assert not torch.allclose(memory.retrieve(bank, query), query)
