"""The transformer side: ModArithTask (tokenizer, verifier, files), the LM backends, checkpoints,
TransformerPolicy and its pi_ref.

Everything runs on tiny models (modulus 5, one to three layers, 24-32 dims) so the file stays fast
on a CPU; one pi_ref is trained once per module and shared by the tests that need a real checkpoint.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from scipy.stats import spearmanr

from grpo_amp.config import Config, ModelConfig, PolicyConfig, ReferenceTrainingConfig, TaskConfig
from grpo_amp.devices import resolve_device
from grpo_amp.io import InputError
from grpo_amp.policies.lm.checkpoint import load_checkpoint
from grpo_amp.policies.lm.hf import HFBackend
from grpo_amp.policies.lm.lean import LeanLlama, block_size
from grpo_amp.policies.lm.model import build_model
from grpo_amp.policies.reference_training import train_reference
from grpo_amp.policies.transformer import TransformerPolicy
from grpo_amp.grpo.pos import pos_exact, pos_mc
from grpo_amp.grpo.rollout import Rollout
from grpo_amp.tasks.modarith import ModArithTask

TASK = TaskConfig(name="modarith", modulus=5, n_train=20, n_heldout=5, seed=0)
MODEL = ModelConfig(n_layer=1, n_embd=32, n_head=2, intermediate_size=64)
REF = ReferenceTrainingConfig(steps=500, batch_size=64, lr=3e-3)


@pytest.fixture(scope="module")
def task() -> ModArithTask:
    return ModArithTask(TASK)


@pytest.fixture(scope="module")
def fresh(task) -> TransformerPolicy:
    return TransformerPolicy.from_config(task, MODEL, seed=0, device="cpu")


@pytest.fixture(scope="module")
def ref(task) -> TransformerPolicy:
    return train_reference(task, MODEL, REF, seed=0, device="cpu")


def ids(task: ModArithTask, text: str) -> list[int]:
    return task.tokenizer(text, add_special_tokens=False)["input_ids"]


def exact_pos(policy, questions: torch.Tensor) -> torch.Tensor:
    """p(q) = sum over the correct answers of pi(answer | q), through pos.py as the pipeline measures it."""
    return torch.from_numpy(pos_exact(policy, questions)[0])


def one_line(exc: pytest.ExceptionInfo) -> str:
    message = str(exc.value)
    assert "\n" not in message
    return message


# ---- the task --------------------------------------------------------------------------------
def test_tokenizer_round_trip_and_autotokenizer(task, tmp_path):
    from transformers import AutoTokenizer

    tok = task.tokenizer
    assert len(tok) == 16  # <pad> <bos> <eos>, ten digits, + * =
    encoded = tok("3+4=")["input_ids"]
    assert encoded[0] == tok.bos_token_id and len(encoded) == 5  # one token per character
    assert tok.decode(encoded, skip_special_tokens=True) == "3+4="
    assert tok.decode(ids(task, "07") + [tok.eos_token_id], skip_special_tokens=True) == "07"

    task.save(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert loaded.get_vocab() == tok.get_vocab()
    assert loaded("3*4=")["input_ids"] == tok("3*4=")["input_ids"]
    assert (loaded.pad_token_id, loaded.eos_token_id) == (task.pad_id, task.eos_id)

    # fixed-width prompts: every prompt is the same number of tokens, even for two-digit operands
    wide = ModArithTask(TaskConfig(name="modarith", modulus=11, n_train=100, n_heldout=21, ops=["+", "*"]))
    assert wide.questions["prompt"].str.len().nunique() == 1
    assert wide.prompt_ids.shape == (121, 1 + 2 + 1 + 2 + 1)
    assert (wide.prompt_ids[:, 0] == wide.tokenizer.bos_token_id).all()


def test_questions_table(task):
    q = task.questions
    assert list(q.columns) == ["question", "split", "prompt", "answers", "noise_rate"]
    assert list(q.index) == list(range(25)) and (q["question"] == q.index).all()
    assert (q["split"] == "train").sum() == 20 and task.split_ids("heldout").tolist() == list(range(20, 25))
    assert q["prompt"].nunique() == 25  # all distinct (a, b) pairs
    for prompt, answers in zip(q["prompt"], q["answers"]):
        a, b = int(prompt[0]), int(prompt[2])
        assert answers == f"{(a + b) % 5}|0{(a + b) % 5}"  # both spellings are correct
    assert q["noise_rate"].between(0, 1).all() and q["noise_rate"].std() > 0.1
    assert ModArithTask(TASK).questions.equals(q)  # seeded

    with pytest.raises(ValueError, match="task.n_train"):
        ModArithTask(TaskConfig(name="modarith", modulus=5, n_train=20, n_heldout=6))
    with pytest.raises(ValueError, match="task.answer_digits"):
        ModArithTask(TaskConfig(name="modarith", modulus=11, answer_digits=1, n_train=4))


def test_task_save_load(task, tmp_path):
    task.save(tmp_path)
    back = ModArithTask.load(tmp_path)
    assert back.cfg == task.cfg and back.questions.equals(task.questions)
    assert torch.equal(back.prompt_ids, task.prompt_ids) and torch.equal(back.answer_ids, task.answer_ids)
    assert "plus_sign" not in (tmp_path / "task.json").read_text()  # the plain task's file keeps its bytes
    signed = ModArithTask(dataclasses.replace(task.cfg, plus_sign=True))
    signed.save(tmp_path / "signed")
    back = ModArithTask.load(tmp_path / "signed")
    assert back.cfg.plus_sign and back.questions.equals(signed.questions) and torch.equal(back.answer_ids, signed.answer_ids)

    with pytest.raises(InputError, match="missing") as exc:
        ModArithTask.load(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in one_line(exc)
    table = tmp_path / "questions.csv"
    table.write_text(table.read_text().replace("|0", "|9", 1))  # a wrong "correct" answer
    with pytest.raises(InputError, match="questions.csv") as exc:
        ModArithTask.load(tmp_path)
    one_line(exc)


def test_reward_hand_built(task):
    # question 0's value, a wrong value, and every failure mode of the format
    value = int(task.questions.loc[0, "answers"].split("|")[0])
    right, wrong = str(value), str((value + 1) % 5)
    eos, pad, plus = task.eos_id, task.pad_id, ids(task, "+")[0]
    rows = [
        (ids(task, right) + [eos, pad], 1.0),         # correct
        (ids(task, "0" + right) + [eos], 1.0),        # zero-padded correct
        (ids(task, wrong) + [eos, pad], 0.0),         # wrong value
        (ids(task, "0" + right) + ids(task, "0"), 0.0),  # no <eos> within the completion
        ([plus, eos, pad], 0.0),                      # not a digit
        ([eos, pad, pad], 0.0),                       # empty
        (ids(task, right) + [plus, eos], 0.0),        # digits then junk
    ]
    tokens = torch.tensor([r for r, _ in rows])[None]   # (1, G, 3)
    mask = torch.ones_like(tokens, dtype=torch.bool)
    for g, row in enumerate(tokens[0]):  # nothing real after the first <eos>
        hit = (row == eos).nonzero()
        if len(hit):
            mask[0, g, hit[0, 0] + 1 :] = False
    reward = task.reward(Rollout(torch.tensor([0]), tokens, mask))
    assert reward.tolist() == [[r for _, r in rows]]

    # an <eos> that the mask says is not real does not end the answer
    masked_eos = Rollout(torch.tensor([0]), tokens[:, :1], torch.tensor([[[True, False, False]]]))
    assert task.reward(masked_eos).item() == 0.0
    # too long: three digits when answer_digits = 2
    long = torch.tensor([[ids(task, "00" + right) + [eos]]])
    assert task.reward(Rollout(torch.tensor([0]), long, torch.ones_like(long, dtype=torch.bool))).item() == 0.0


def test_reward_with_a_plus_sign():
    """task.plus_sign: "+7" and "+07" are correct as well; a sign alone, twice, or after a digit is not."""
    signed = ModArithTask(TaskConfig(name="modarith", modulus=5, n_train=4, n_heldout=0, plus_sign=True))
    assert signed.max_new_tokens == 4 and signed.questions["answers"].str.count(r"\|").eq(3).all()
    value = int(signed.questions.loc[0, "answers"].split("|")[0])
    right, wrong = str(value), str((value + 1) % 5)
    eos, pad, plus = signed.eos_id, signed.pad_id, ids(signed, "+")[0]
    rows = [
        (ids(signed, right) + [eos, pad, pad], 1.0),
        (ids(signed, "0" + right) + [eos, pad], 1.0),
        ([plus] + ids(signed, right) + [eos, pad], 1.0),
        ([plus] + ids(signed, "0" + right) + [eos], 1.0),
        ([plus] + ids(signed, wrong) + [eos, pad], 0.0),      # wrong value
        ([plus, eos, pad, pad], 0.0),                         # a sign, no digits
        ([plus, plus] + ids(signed, right) + [eos], 0.0),     # two signs
        (ids(signed, right) + [plus, eos, pad], 0.0),         # the sign after the digits
        ([plus] + ids(signed, "00" + right), 0.0),            # three digits, no <eos>
    ]
    tokens = torch.tensor([r for r, _ in rows])[None]   # (1, G, 4)
    mask = torch.ones_like(tokens, dtype=torch.bool)
    for g, row in enumerate(tokens[0]):
        hit = (row == eos).nonzero()
        if len(hit):
            mask[0, g, hit[0, 0] + 1 :] = False
    assert signed.reward(Rollout(torch.tensor([0]), tokens, mask)).tolist() == [[r for _, r in rows]]
    # the same "+7" is wrong where the task has no sign
    plain = ModArithTask(TaskConfig(name="modarith", modulus=5, n_train=4, n_heldout=0))
    signed_right = torch.tensor([[[plus] + ids(plain, right) + [eos]]])
    assert plain.reward(Rollout(torch.tensor([0]), signed_right, torch.ones_like(signed_right, dtype=torch.bool))).item() == 0.0


# ---- checkpoints -----------------------------------------------------------------------------
def test_checkpoint_round_trip(task, ref, tmp_path):
    ref.save(tmp_path / "ck")
    back = TransformerPolicy.load(tmp_path / "ck", task, device="cpu")
    rollout = ref.sample(torch.arange(25), 4, torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(back.log_softmax(rollout), ref.log_softmax(rollout))
    assert torch.equal(back.answer_log_probs(torch.arange(25)), ref.answer_log_probs(torch.arange(25)))


def test_checkpoint_missing_or_corrupt(task, fresh, tmp_path):
    with pytest.raises(InputError) as exc:
        TransformerPolicy.load(tmp_path / "absent", task)
    assert str(tmp_path / "absent") in one_line(exc)

    fresh.save(tmp_path / "ck")
    weights = tmp_path / "ck" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:200])  # truncated
    with pytest.raises(InputError, match="corrupt") as exc:
        TransformerPolicy.load(tmp_path / "ck", task)
    assert str(tmp_path / "ck") in one_line(exc)
    weights.unlink()
    with pytest.raises(InputError, match="safetensors") as exc:
        TransformerPolicy.load(tmp_path / "ck", task)
    assert str(tmp_path / "ck") in one_line(exc)


# ---- exact and Monte Carlo PoS ---------------------------------------------------------------
def next_token_probs(model, prefix: list[int]) -> torch.Tensor:
    """softmax of the model's last logits after ``prefix``: one plain forward, no cache."""
    with torch.no_grad():
        return model(input_ids=torch.tensor([prefix])).logits[0, -1].softmax(-1)


def sequence_prob(model, prompt: list[int], completion: list[int]) -> float:
    prob = 1.0
    for t, token in enumerate(completion):
        prob *= next_token_probs(model, prompt + completion[:t])[token].item()
    return prob


def test_exact_pos_is_the_product_of_next_token_probs(task, ref):
    q = 3
    prompt = task.prompt_ids[q].tolist()
    value = task.questions.loc[q, "answers"].split("|")[0]
    short = ids(task, value) + [task.eos_id]         # digit, <eos>
    padded = ids(task, "0" + value) + [task.eos_id]  # 0, digit, <eos>
    p_short, p_padded = sequence_prob(ref.model, prompt, short), sequence_prob(ref.model, prompt, padded)

    logp = ref.answer_log_probs(torch.tensor([q]))   # (1, 2)
    assert logp.exp()[0].tolist() == pytest.approx([p_short, p_padded], rel=1e-4)
    assert exact_pos(ref, torch.tensor([q])).item() == pytest.approx(p_short + p_padded, rel=1e-4)


def test_exact_pos_with_padded_answer_lists():
    # modulus 11: the value 10 has one spelling, every other value two, so answer lists are padded
    wide = ModArithTask(TaskConfig(name="modarith", modulus=11, n_train=30, n_heldout=0))
    policy = TransformerPolicy.from_config(wide, MODEL, seed=1, device="cpu")
    ten = int((wide.values == 10).nonzero()[0, 0])
    three = int((wide.values == 3).nonzero()[0, 0])
    logp = policy.answer_log_probs(torch.tensor([ten, three]))  # (2, 2)
    assert logp[0, 1].item() == float("-inf") and torch.isfinite(logp[1]).all()

    def prob(q: int, answer: str) -> float:
        return sequence_prob(policy.model, wide.prompt_ids[q].tolist(), wide.encode_answer(answer))

    want_ten, want_three = prob(ten, "10"), prob(three, "3") + prob(three, "03")
    pos = exact_pos(policy, torch.tensor([ten, three]))
    assert pos.tolist() == pytest.approx([want_ten, want_three], rel=1e-4)


def wilson(successes: int, n: int, z: float = 2.5758) -> tuple[float, float]:
    """Wilson score interval (99% for z = 2.5758)."""
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def test_exact_pos_inside_wilson_interval_of_monte_carlo(ref):
    questions = torch.tensor([0, 5, 11, 22])
    exact = exact_pos(ref, questions)
    n = 2000
    pos, lo, hi = pos_mc(ref, ref.task, questions, n, torch.Generator().manual_seed(7))
    n_success = (pos * n).round().astype(int)
    assert ((lo <= pos) & (pos <= hi)).all()
    for p, k in zip(exact.tolist(), n_success.tolist()):
        low, high = wilson(k, n)
        assert low <= p <= high, (p, k, n)


# ---- sampling and log-probs ------------------------------------------------------------------
def test_sample_shapes_mask_and_reproducibility(task, ref):
    questions = torch.arange(25)
    rollout = ref.sample(questions, 8, torch.Generator().manual_seed(0))
    assert rollout.tokens.shape == rollout.mask.shape == (25, 8, task.max_new_tokens)
    assert rollout.tokens.dtype == torch.long and rollout.mask.dtype == torch.bool

    is_eos = (rollout.tokens == task.eos_id) & rollout.mask
    assert is_eos.sum(-1).le(1).all()  # at most one real <eos>
    ended_before = (is_eos.cumsum(-1) - is_eos.int()) > 0  # (Q, G, T): an <eos> came earlier
    assert torch.equal(rollout.mask, ~ended_before)  # real up to and including <eos>, nothing after
    assert (rollout.tokens[~rollout.mask] == task.pad_id).all()
    assert ended_before.any()  # a trained pi_ref stops early on short answers

    again = ref.sample(questions, 8, torch.Generator().manual_seed(0))
    other = ref.sample(questions, 8, torch.Generator().manual_seed(1))
    assert torch.equal(again.tokens, rollout.tokens) and torch.equal(again.mask, rollout.mask)
    assert not torch.equal(other.tokens, rollout.tokens)


def test_log_softmax_normalised_with_gradient(task, fresh):
    policy = fresh.frozen_copy()
    policy.requires_grad_(True)
    rollout = policy.sample(torch.tensor([0, 1, 2]), 4, torch.Generator().manual_seed(0))
    logq = policy.log_softmax(rollout)
    assert logq.shape == (3, 4, task.max_new_tokens, task.vocab_size) and logq.dtype == torch.float32
    assert torch.allclose(logq.exp().sum(-1), torch.ones(3, 4, task.max_new_tokens), atol=1e-5)

    # the shared-prompt KV cache gives what one plain forward over prompt + completion gives
    Q, G, T = rollout.tokens.shape
    inputs = torch.cat([policy.prompt_ids[rollout.questions].repeat_interleave(G, 0), rollout.tokens.view(Q * G, T)], 1)
    P = policy.prompt_ids.shape[1]
    plain = policy.model(input_ids=inputs).logits[:, P - 1 : -1].log_softmax(-1).view(Q, G, T, -1)
    assert torch.allclose(logq, plain, atol=1e-5)

    logq.gather(-1, rollout.tokens[..., None]).sum().backward()
    grads = [p.grad for p in policy.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0


def test_frozen_copy_matches_and_has_no_gradient(fresh):
    frozen = fresh.frozen_copy()
    assert not any(p.requires_grad for p in frozen.parameters())
    assert torch.equal(frozen.answer_log_probs(torch.arange(5)), fresh.answer_log_probs(torch.arange(5)))


# ---- pi_ref ----------------------------------------------------------------------------------
def test_reference_batch_never_draws_a_heldout_question(task):
    """E3 (issue 20): pi_ref's training data holds train questions only, every one of them."""
    questions, _, _ = task.reference_batch(4000, torch.Generator().manual_seed(0))
    assert set(questions.tolist()) == set(task.split_ids("train").tolist())


def test_train_reference_spreads_p_ref_by_noise(task, ref):
    train = task.split_ids("train")  # held-out questions are not in pi_ref's data: their noise rates mean nothing
    pos = exact_pos(ref, train)
    noise = task.noise_rate[train]
    clean = 1 - noise
    assert spearmanr(clean, pos).statistic > 0.3
    low_noise = noise < noise.median()
    assert pos[low_noise].mean() > pos[~low_noise].mean() + 0.1
    assert 0 < pos.min() and pos.max() < 1


def test_train_reference_is_deterministic(task):
    short = ReferenceTrainingConfig(steps=15, batch_size=16, lr=3e-3)
    first = train_reference(task, MODEL, short, seed=3, device="cpu").state_dict()
    second = train_reference(task, MODEL, short, seed=3, device="cpu").state_dict()
    third = train_reference(task, MODEL, short, seed=4, device="cpu").state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], third[k]) for k in first)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_cuda_matches_cpu(task, ref):
    gpu = ref.frozen_copy().to("cuda")
    questions = torch.arange(25)
    assert torch.allclose(exact_pos(gpu, questions), exact_pos(ref, questions), atol=0.03)  # bf16 autocast
    for generator in (torch.Generator().manual_seed(0), torch.Generator("cuda").manual_seed(0)):
        rollout = gpu.sample(questions, 8, generator)
        assert rollout.tokens.device.type == "cuda"
        assert gpu.log_softmax(rollout).dtype == torch.float32


def test_loads_a_gpt2_style_checkpoint(task, tmp_path):
    # any local causal-LM checkpoint with the task's tokenizer goes through the same code
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=task.vocab_size, n_embd=32, n_layer=1, n_head=2, n_positions=32,
                        bos_token_id=task.tokenizer.bos_token_id, eos_token_id=task.eos_id)
    GPT2LMHeadModel(config).save_pretrained(tmp_path)
    task.tokenizer.save_pretrained(tmp_path)
    policy = TransformerPolicy.load(tmp_path, task, device="cpu")

    rollout = policy.sample(torch.arange(4), 3, torch.Generator().manual_seed(0))
    Q, G, T = rollout.tokens.shape
    P = policy.prompt_ids.shape[1]
    inputs = torch.cat([policy.prompt_ids[:4].repeat_interleave(G, 0), rollout.tokens.view(Q * G, T)], 1)
    with torch.no_grad():
        plain = policy.model(input_ids=inputs).logits[:, P - 1 : -1].log_softmax(-1).view(Q, G, T, -1)
        assert torch.allclose(policy.log_softmax(rollout), plain, atol=1e-5)
    assert (exact_pos(policy, torch.arange(4)) < 1).all()


# ---- the backends: lean and HF against one plain forward, across blocks and lengths ----------
LAYERED = [ModelConfig(n_layer=2, n_embd=32, n_head=4, intermediate_size=48),
           ModelConfig(n_layer=3, n_embd=24, n_head=2, intermediate_size=40)]
# (Q prompts, K continuations each, P prompt tokens, S continuation tokens): one block, several
# blocks of several continuations, blocks of one (K prime), long continuations, S = 1
SHAPES = [(1, 1, 1, 1), (2, 4, 5, 3), (3, 24, 5, 3), (2, 100, 7, 3), (2, 7, 9, 10), (1, 300, 5, 4), (2, 64, 3, 1)]


def perturbed(task: ModArithTask, model_cfg: ModelConfig, seed: int):
    """A fresh Llama with every weight moved off its init, RMSNorm gains included (the lean forward folds them)."""
    model = build_model(task, model_cfg, seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return model


def plain_logits(model, prompt_ids: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Logits after the prompt and after each continuation token, one float64 forward per row, no cache: (Q, K, S+1, V).

    float64, so the truth the float32 backends are held to carries no rounding of its own.
    """
    import copy

    Q, K, S = tokens.shape
    P = prompt_ids.shape[1]
    inputs = torch.cat([prompt_ids.repeat_interleave(K, 0), tokens.reshape(Q * K, S)], 1)
    with torch.no_grad():
        return copy.deepcopy(model).double()(input_ids=inputs).logits[:, P - 1 :].reshape(Q, K, S + 1, -1)


# float32 rounding with the perturbed weights' activations (logits up to ~20) reaches ~4e-5 for HF's
# forward and for the lean one alike; a wrong mask, position or key costs 1e-2 and more
ATOL = 1e-4


def random_case(task, shape, seed):
    Q, K, P, S = shape
    g = torch.Generator().manual_seed(seed)
    return (torch.randint(task.vocab_size, (Q, P), generator=g),
            torch.randint(task.vocab_size, (Q, K, S), generator=g))


def test_the_cases_cover_several_blocks():
    """The shapes below reach the block-splitting code: some use one block, others many of one or more."""
    n_blocks = {K // block_size(K, S) for _, K, _, S in SHAPES}
    sizes = {block_size(K, S) for _, K, _, S in SHAPES}
    assert 1 in n_blocks and max(n_blocks) >= 5 and 1 in sizes and max(sizes) >= 12
    assert block_size(100, 3) == 20 and block_size(7, 10) == 1 and block_size(300, 4) == 15


@pytest.mark.parametrize("model_cfg", LAYERED, ids=["2 layers", "3 layers"])
@pytest.mark.parametrize("which", ["lean", "hf"])
def test_backend_prompt_and_extend_match_a_plain_forward(task, model_cfg, which):
    model = perturbed(task, model_cfg, seed=1)
    backend = LeanLlama(model) if which == "lean" else HFBackend(model)
    for i, shape in enumerate(SHAPES):
        prompt_ids, tokens = random_case(task, shape, seed=i)
        want = plain_logits(model, prompt_ids, tokens).log_softmax(-1)  # (Q, K, S+1, V)
        with torch.no_grad():
            first, state = backend.prompt(prompt_ids)      # (Q, V)
            rest = backend.extend(state, tokens)           # (Q, K, S, V)
        assert rest.shape == tokens.shape + (task.vocab_size,), shape
        assert torch.allclose(first.log_softmax(-1), want[:, 0, 0].float(), atol=ATOL), shape
        assert torch.allclose(rest.log_softmax(-1), want[:, :, 1:].float(), atol=ATOL), shape
        assert want.std() > 0.5  # logits that differ by token: a wrong key or position would show


@pytest.mark.parametrize("model_cfg", LAYERED, ids=["2 layers", "3 layers"])
@pytest.mark.parametrize("which", ["lean", "hf"])
def test_backend_decode_matches_a_plain_forward_at_every_step(task, model_cfg, which):
    model = perturbed(task, model_cfg, seed=2)
    backend = LeanLlama(model) if which == "lean" else HFBackend(model)
    for i, shape in enumerate(SHAPES):
        prompt_ids, tokens = random_case(task, shape, seed=10 + i)
        Q, K, _, S = shape
        want = plain_logits(model, prompt_ids, tokens).log_softmax(-1)
        with torch.no_grad():
            _, state = backend.prompt(prompt_ids)
            cache = None
            for t in range(S):  # max_len = S: the block size the sampler would pick for S tokens
                logits, cache = backend.decode(state, tokens[:, :, t], cache, S)  # (Q, K, V)
                assert logits.shape == (Q, K, task.vocab_size)
                assert torch.allclose(logits.log_softmax(-1), want[:, :, t + 1].float(), atol=ATOL), (shape, t)


@pytest.mark.parametrize("task_cfg", [TaskConfig(name="modarith", modulus=5, n_train=20, n_heldout=5, seed=0),
                                      TaskConfig(name="modarith", modulus=11, n_train=40, n_heldout=0, answer_digits=3)],
                         ids=["P5 T3", "P7 T4"])
def test_policy_lean_and_hf_paths_agree(task_cfg):
    """Sampling and log-softmax through the policy, lean vs HF's forward, on the same weights and seeds.

    Float rounding may flip a draw that lands on a probability boundary, so sampling is allowed one
    differing row in a thousand; the log-probs must agree to ATOL everywhere.
    """
    wide = ModArithTask(task_cfg)
    model = perturbed(wide, LAYERED[0], seed=3)
    lean = TransformerPolicy(wide, model, device="cpu")
    hf = TransformerPolicy(wide, model, device="cpu", lean=False)
    assert isinstance(lean.backend(), LeanLlama) and isinstance(hf.backend(), HFBackend)
    questions = torch.arange(len(wide.questions))
    for G in (1, 8, 300):
        a = lean.sample(questions, G, torch.Generator().manual_seed(G))
        b = hf.sample(questions, G, torch.Generator().manual_seed(G))
        differ = (a.tokens != b.tokens).any(-1).double().mean().item()
        assert differ <= 1e-3, (G, differ)
        if G == 300:
            assert (~a.mask).any()  # some rows stopped early at <eos>: the masked path ran
        with torch.no_grad():
            assert torch.allclose(lean.log_softmax(a), hf.log_softmax(a), atol=ATOL), G
    assert torch.allclose(lean.answer_log_probs(questions), hf.answer_log_probs(questions), atol=ATOL)


def test_lean_backend_only_for_plain_llamas(task):
    from transformers import GPT2Config, GPT2LMHeadModel

    plain = build_model(task, MODEL, seed=0)
    assert LeanLlama.supports(plain)
    gqa = build_model(task, ModelConfig(n_layer=1, n_embd=32, n_head=4, intermediate_size=64), seed=0)
    gqa.config.num_key_value_heads = 2  # the config the lean forward would misread
    assert not LeanLlama.supports(gqa)
    gpt2 = GPT2LMHeadModel(GPT2Config(vocab_size=task.vocab_size, n_embd=32, n_layer=1, n_head=2, n_positions=32))
    assert not LeanLlama.supports(gpt2)
    assert isinstance(TransformerPolicy(task, gpt2, device="cpu").backend(), HFBackend)


def test_build_model_is_seeded_and_leaves_the_global_rng_alone(task):
    before = torch.random.get_rng_state()
    a, b, c = build_model(task, MODEL, seed=5), build_model(task, MODEL, seed=5), build_model(task, MODEL, seed=6)
    assert torch.equal(torch.random.get_rng_state(), before)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa) and not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.config.tie_word_embeddings and a.config.initializer_range == MODEL.n_embd ** -0.5
    untied = build_model(task, MODEL, seed=5, tie_word_embeddings=False, initializer_range=0.02)
    assert untied.lm_head.weight.data_ptr() != untied.model.embed_tokens.weight.data_ptr()
    with pytest.raises(ValueError, match="n_head"):
        build_model(task, ModelConfig(n_layer=1, n_embd=30, n_head=4), seed=0)


# ---- checkpoint checks (lm.checkpoint): every bad directory is one line naming it --------------
def test_load_checkpoint_rejects_bad_directories(task, fresh, tmp_path):
    import json

    from safetensors.torch import load_file, save_file

    cases = {}
    for name in ("no_config", "no_key", "tokenizer_swapped", "tokenizer_corrupt"):
        fresh.save(tmp_path / name)
        cases[name] = tmp_path / name
    (cases["no_config"] / "config.json").unlink()
    weights = cases["no_key"] / "model.safetensors"
    tensors = load_file(weights)
    del tensors["model.norm.weight"]
    save_file(tensors, weights, metadata={"format": "pt"})
    spec = json.loads((cases["tokenizer_swapped"] / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    vocab["0"], vocab["1"] = vocab["1"], vocab["0"]  # rewards would read the wrong digits
    (cases["tokenizer_swapped"] / "tokenizer.json").write_text(json.dumps(spec))
    (cases["tokenizer_corrupt"] / "tokenizer.json").write_text("{not json")

    from transformers import GPT2Config, GPT2LMHeadModel

    small = tmp_path / "small_vocab"
    GPT2LMHeadModel(GPT2Config(vocab_size=8, n_embd=16, n_layer=1, n_head=2, n_positions=16)).save_pretrained(small)
    cases["small_vocab"] = small

    expected = {"no_config": "missing checkpoint", "no_key": "missing weights", "tokenizer_swapped": "does not match",
                "tokenizer_corrupt": "corrupt tokenizer", "small_vocab": "fewer than the task's 16"}
    for name, directory in cases.items():
        with pytest.raises(InputError, match=expected[name]) as exc:
            load_checkpoint(directory, task)
        assert str(directory) in one_line(exc), name


def test_checkpoint_keeps_fp32_and_the_weights(task, fresh, tmp_path):
    fresh.save(tmp_path)
    model = load_checkpoint(tmp_path, task)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    want = fresh.model.state_dict()
    assert all(torch.equal(model.state_dict()[k], want[k]) for k in want)


# ---- devices ----------------------------------------------------------------------------------
def test_resolve_device_is_what_the_stages_use():
    from grpo_amp.stages.common import device_for

    assert resolve_device("cpu") == "cpu" and resolve_device(torch.device("cpu")) == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    for device in ("auto", "cpu", "cuda:1"):
        cfg = Config(policy=PolicyConfig(device=device))
        assert device_for(cfg) == resolve_device(device)


# --------------------------------------------------------------------------- the transformer control's update
def _control_cfg(**grpo) -> Config:
    """transformer_control's preset (m groups, inner_tol) on the test's tiny task and model."""
    from grpo_amp.config import compose_config

    cfg = compose_config(["policy=transformer_control", "scale=smoke"])
    return dataclasses.replace(cfg, task=TASK, grpo=dataclasses.replace(cfg.grpo, **grpo),
                               policy=dataclasses.replace(cfg.policy, model=MODEL))


def test_control_update_averages_m_groups_of_G(task, ref, monkeypatch):
    """grpo_update on the transformer with m groups per question: advantages per group of G (not over
    all m*G), and the loss is the mean of the m single-group losses (sequence_mean weighs sequences alike)."""
    from grpo_amp.grpo import trainer
    from grpo_amp.grpo.loss import group_advantages, grpo_loss

    m, G = 3, 4
    cfg = _control_cfg(groups_per_question=m, group_size=G, max_inner_steps=4)
    seen = {}
    sample, loss_fn = TransformerPolicy.sample, trainer.grpo_loss

    def spy_sample(self, questions, n, generator):
        seen["n"] = n
        seen["rollout"] = sample(self, questions, n, generator)
        return seen["rollout"]

    def spy_loss(*args):
        seen["args"] = args  # the last call: after some steps pi differs from pi_old and pi_ref (at the first
        return loss_fn(*args)  # every group's loss is 0: A sums to 0 per group, the KL is 0)
    monkeypatch.setattr(TransformerPolicy, "sample", spy_sample)
    monkeypatch.setattr(trainer, "grpo_loss", spy_loss)
    policy = ref.frozen_copy().requires_grad_(True)
    old = policy.frozen_copy()
    questions = task.split_ids("train")
    metrics = trainer.grpo_update(policy, old, ref, task, questions, cfg, torch.Generator().manual_seed(1))
    assert seen["n"] == m * G and metrics.inner_steps_taken >= cfg.grpo.inner_steps
    logq, old_logq, ref_logq, tokens, mask, adv, v, g = seen["args"]
    rewards = task.reward(seen["rollout"])                                         # (Q, m*G)
    Q = len(questions)
    assert adv.shape == (Q, m * G) and rewards.shape == (Q, m * G)
    per_group = [group_advantages(rewards[:, j * G:(j + 1) * G], v.norm.value, v.eps, v.std.value)[0]
                 for j in range(m)]
    torch.testing.assert_close(adv, torch.cat(per_group, dim=1).to(adv.dtype))
    pooled = group_advantages(rewards, v.norm.value, v.eps, v.std.value)[0]      # one group of m*G: not this
    assert not torch.allclose(adv, pooled.to(adv.dtype))
    whole = grpo_loss(logq, old_logq, ref_logq, tokens, mask, adv, v, g).loss
    sl = lambda x, j: x[:, j * G:(j + 1) * G]  # noqa: E731
    parts = [grpo_loss(sl(logq, j), sl(old_logq, j), sl(ref_logq, j), sl(tokens, j), sl(mask, j), sl(adv, j), v, g).loss
             for j in range(m)]
    torch.testing.assert_close(whole, torch.stack(parts).mean())
    assert max(abs(float((p - whole).detach())) for p in parts) > 1e-4  # the groups differ: the mean is not any one of them


def test_control_update_steps_until_the_objective_stops_improving(task, ref):
    """With inner_tol the steps go past M while the sampled objective falls, and stop early when it is flat."""
    from grpo_amp.grpo.trainer import STOP_WINDOW, grpo_update

    questions = task.split_ids("train")

    def steps(**grpo):
        cfg = _control_cfg(groups_per_question=2, **grpo)
        policy = ref.frozen_copy().requires_grad_(True)
        return grpo_update(policy, policy.frozen_copy(), ref, task, questions, cfg,
                           torch.Generator().manual_seed(2)).inner_steps_taken
    # a learning rate too small to move the objective: it stops as soon as it may (M and the window)
    assert steps(inner_steps=2, lr=1e-9, inner_tol=1e-4, max_inner_steps=40) == max(2, STOP_WINDOW)
    # a real step: past M, below the cap, and the cap binds where the tolerance is out of reach
    taken = steps(inner_steps=2, lr=3e-3, inner_tol=1e-3, max_inner_steps=200)
    assert STOP_WINDOW < taken < 200
    assert steps(inner_steps=2, lr=3e-3, inner_tol=1e-9, max_inner_steps=7) == 7
    assert steps(inner_steps=3, lr=3e-3, inner_tol=None) == 3  # practice: exactly M
