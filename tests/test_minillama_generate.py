"""Generation: greedy equals transformers' generate, cached decoding equals a full forward, ragged batches."""
from __future__ import annotations

import pytest
import torch

from conftest import make_tiny_hf_llama
from minillama import Llama, LlamaConfig, MiniLlamaError, finish_reasons, left_pad
from minillama.sampling import sample_next


def _pair(**overrides):
    hf = make_tiny_hf_llama(**overrides)
    model = Llama(LlamaConfig.from_hf_dict(hf.config.to_dict())).eval()
    model.load_state_dict(hf.state_dict(), strict=not hf.config.tie_word_embeddings)
    model.tie_weights()
    return hf, model


@pytest.mark.parametrize("kv_heads", [4, 2])
def test_greedy_equals_transformers_generate(kv_heads):
    hf, model = _pair(num_key_value_heads=kv_heads)
    ids = torch.randint(3, 128, (2, 7), generator=torch.Generator().manual_seed(0))
    ref = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=24, do_sample=False,
                      eos_token_id=None, pad_token_id=0)
    ours = model.generate(ids, max_new_tokens=24, eos_id=None)
    assert torch.equal(ours, ref)


def test_greedy_stops_at_eos_like_transformers():
    hf, model = _pair()
    ids = torch.randint(3, 128, (3, 5), generator=torch.Generator().manual_seed(1))
    free = model.generate(ids, max_new_tokens=12, eos_id=None)
    eos = int(free[0, 8])  # pretend the token row 0 emits at its 4th step is EOS
    ref = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=12, do_sample=False,
                      eos_token_id=eos, pad_token_id=0)
    ours = model.generate(ids, max_new_tokens=12, eos_id=eos, pad_id=0)
    assert torch.equal(ours, ref)
    row0 = ours[0, 5:].tolist()
    assert eos in row0 and all(t == 0 for t in row0[row0.index(eos) + 1:])
    expected = ["stop" if eos in row[5:].tolist() else "length" for row in ours]
    assert finish_reasons(ours, 5, eos) == expected and expected[0] == "stop"


def test_ragged_left_padded_batch_equals_each_prompt_alone():
    hf, model = _pair(num_key_value_heads=2)
    g = torch.Generator().manual_seed(2)
    prompts = [torch.randint(3, 128, (n,), generator=g).tolist() for n in (9, 3, 6, 1)]
    ids, mask = left_pad(prompts, pad_id=0)
    batch = model.generate(ids, max_new_tokens=10, attention_mask=mask, eos_id=None)
    for i, p in enumerate(prompts):
        alone = model.generate(torch.tensor([p]), max_new_tokens=10, eos_id=None)
        assert batch[i, -10:].tolist() == alone[0, -10:].tolist()
    # And the same batch through transformers (which also derives positions from the mask).
    ref = hf.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False, eos_token_id=None,
                      pad_token_id=0)
    assert torch.equal(batch, ref)


def test_finished_rows_leave_the_batch_and_answers_stay_those_of_transformers():
    """Rows that hit EOS at different steps leave the batch (the forward passes shrink), and every row's
    tokens stay those of transformers' generate on the whole batch and of the prompt alone."""
    hf, model = _pair(num_key_value_heads=2)
    g = torch.Generator().manual_seed(5)
    prompts = [torch.randint(3, 128, (n,), generator=g).tolist() for n in (9, 3, 6, 1, 4, 8, 2, 7, 5, 3)]
    ids, mask = left_pad(prompts, pad_id=0)
    free = model.generate(ids, max_new_tokens=16, attention_mask=mask, eos_id=None)[:, ids.shape[1]:]
    eos = sorted({int(free[0, 2]), int(free[3, 6]), int(free[6, 11])})  # rows stop at several steps
    widths = []
    hook = model.lm_head.register_forward_hook(lambda m, i, o: widths.append(o.shape[0]))
    streamed = []
    ours = model.generate(ids, max_new_tokens=16, attention_mask=mask, eos_id=eos, pad_id=0,
                          on_token=streamed.append)
    hook.remove()
    ref = hf.generate(ids, attention_mask=mask, max_new_tokens=16, do_sample=False, eos_token_id=eos,
                      pad_token_id=0)
    assert torch.equal(ours, ref)
    stops = {row.index(t) for row in ours[:, ids.shape[1]:].tolist() for t in eos if t in row}
    assert len(stops) >= 2 and widths[0] == len(prompts) and min(widths) < len(prompts)  # it did shrink
    assert torch.equal(torch.stack(streamed, 1), ours[:, ids.shape[1]:])  # on_token saw every row, pads included
    for i, p in enumerate(prompts):
        alone = model.generate(torch.tensor([p]), max_new_tokens=16, eos_id=eos, pad_id=0)[0, len(p):].tolist()
        assert ours[i, ids.shape[1]:].tolist()[:len(alone)] == alone


def test_padded_forward_logits_equal_unpadded():
    _, model = _pair(num_key_value_heads=2)
    p = torch.randint(3, 128, (1, 6), generator=torch.Generator().manual_seed(3))
    ids, mask = left_pad([p[0].tolist(), list(range(3, 12))])
    with torch.no_grad():
        torch.testing.assert_close(model(ids, attention_mask=mask)[0, -6:], model(p)[0])
        # Right padding (training): the real tokens' logits do not see the padding either.
        right = torch.cat([p, torch.zeros(1, 3, dtype=torch.long)], dim=1)
        rmask = torch.cat([torch.ones(1, 6), torch.zeros(1, 3)], dim=1).long()
        torch.testing.assert_close(model(right, attention_mask=rmask)[0, :6], model(p)[0])


def test_cached_generation_equals_full_forward_argmax():
    _, model = _pair()
    ids = torch.randint(3, 128, (2, 4), generator=torch.Generator().manual_seed(4))
    out = model.generate(ids, max_new_tokens=8, eos_id=None)
    with torch.no_grad():
        for t in range(4, out.shape[1]):  # each new token is the argmax of a full, uncached forward
            assert torch.equal(model(out[:, :t])[:, -1].argmax(-1), out[:, t])


def test_sampling_is_seeded_and_respects_top_k():
    _, model = _pair()
    ids = torch.randint(3, 128, (2, 4), generator=torch.Generator().manual_seed(5))
    a = model.generate(ids, 12, temperature=1.0, top_p=0.9, seed=7, eos_id=None)
    b = model.generate(ids, 12, temperature=1.0, top_p=0.9, seed=7, eos_id=None)
    c = model.generate(ids, 12, temperature=1.0, top_p=0.9, seed=8, eos_id=None)
    assert torch.equal(a, b) and not torch.equal(a, c)
    # top_k=1 is greedy whatever the temperature.
    assert torch.equal(model.generate(ids, 6, temperature=5.0, top_k=1, seed=0, eos_id=None),
                       model.generate(ids, 6, eos_id=None))


def test_sample_next_hand_computed():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    # top_p=0.7: the mass before token 1 is 0.5 (kept), before token 2 is 0.8 > 0.7 (dropped).
    seen = {int(sample_next(logits, 1.0, top_p=0.7, generator=g)) for _ in range(200)}
    assert seen == {0, 1}
    seen = {int(sample_next(logits, 1.0, top_k=3, generator=g)) for _ in range(400)}
    assert seen == {0, 1, 2}
    assert int(sample_next(logits)) == 0


def test_on_token_streams_every_step_and_bad_settings():
    _, model = _pair()
    ids = torch.randint(3, 128, (1, 4))
    seen = []
    out = model.generate(ids, 5, eos_id=None, on_token=lambda t: seen.append(int(t[0])))
    assert seen == out[0, 4:].tolist()
    with pytest.raises(MiniLlamaError, match="left-padded"):
        model.generate(ids, 3, attention_mask=torch.tensor([[1, 1, 1, 0]]))
    with pytest.raises(MiniLlamaError, match="top_p"):
        model.generate(ids, 3, top_p=0.0)


@pytest.mark.parametrize("ragged", [False, True])
def test_static_decode_step_equals_dynamic(ragged):
    """The static-shape step that CUDA graphs replay (run eagerly here) generates the same tokens."""
    _, model = _pair(num_key_value_heads=2)
    g = torch.Generator().manual_seed(6)
    prompts = [torch.randint(3, 128, (n,), generator=g).tolist() for n in ((7, 2, 5) if ragged else (6, 6))]
    ids, mask = left_pad(prompts)
    for kwargs in (dict(), dict(temperature=0.9, top_k=20, seed=3)):
        dynamic = model.generate(ids, 9, attention_mask=mask, eos_id=None, **kwargs)
        static = model.generate(ids, 9, attention_mask=mask, eos_id=None, cuda_graph=True, **kwargs)
        assert torch.equal(static, dynamic)
