"""The RNN language model, its task (truncated BPTT, perplexity) and sampling."""

import math

import pytest
import torch

from rnnseq import metrics as M
from rnnseq.data.text import StreamWindows, TextBatch, batchify
from rnnseq.data.tokenizer import CharTokenizer
from rnnseq.decoding.sampling import filter_logits, generate, sample_next
from rnnseq.models.language_model import RNNLanguageModel
from rnnseq.models.recurrent import CELLS
from rnnseq.tasks.language_model import LanguageModel

TOKENIZER = CharTokenizer.from_texts(["abcdefgh "])
LM_CONFIG = {"lm": {"_target_": "rnnseq.models.language_model.RNNLanguageModel", "_partial_": True,
                    "embed_dim": 8, "hidden_size": 12, "num_layers": 2}}
ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 1e-2}


def make_task(**lm) -> LanguageModel:
    config = {"lm": {**LM_CONFIG["lm"], **lm}}
    return LanguageModel(config, TOKENIZER.state(), ADAM, scheduler=None)


@pytest.mark.parametrize("cell", CELLS)
def test_model_shapes_and_step_equals_forward(cell):
    torch.manual_seed(0)
    model = RNNLanguageModel(10, embed_dim=6, hidden_size=8, num_layers=2, cell=cell).eval()
    tokens = torch.randint(0, 10, (3, 5))
    logits, (h, c) = model(tokens)
    assert logits.shape == (3, 5, 10)
    assert h.shape == (2, 3, 4 if cell == "lstmp" else 8)  # lstmp: h projected to half
    assert c.shape == (2, 3, 0 if cell in ("gru", "rnn") else 8)
    step_state = None
    for t in range(5):
        step_logits, step_state = model.step(tokens[:, t], step_state)
        assert torch.allclose(step_logits, logits[:, t], atol=1e-5)


def test_tied_weights_share_one_matrix_and_project_when_sizes_differ():
    model = RNNLanguageModel(10, embed_dim=6, hidden_size=8, tie_weights=True)
    assert model.output.weight is model.embed.weight and model.projection is not None
    assert model(torch.zeros(2, 3, dtype=torch.long))[0].shape == (2, 3, 10)


def test_carried_state_continues_across_batches_and_is_detached():
    torch.manual_seed(0)
    task = make_task()
    task.train()
    rows = batchify(torch.randint(3, len(TOKENIZER), (2 * 13,)), 2)
    windows = StreamWindows(rows, bptt=4)
    task.on_train_epoch_start()
    task.token_nll(windows[0], "train")
    carried = task._states["train"]
    assert all(not s.requires_grad and s.grad_fn is None for s in carried)
    # The second window, run from the carried state, equals the two windows run as one sequence.
    task.eval()
    task._states["train"] = None
    joined = TextBatch(rows[:, :8], rows[:, 1:9], stateful=True)
    whole, count = task.token_nll(joined, "train")
    task._states["train"] = None
    first, n1 = task.token_nll(windows[0], "train")
    second, n2 = task.token_nll(windows[1], "train")
    assert torch.allclose(first + second, whole, atol=1e-4) and n1 + n2 == count
    # Independent lines never carry a state.
    lines = TextBatch(rows[:, :4], rows[:, 1:5], stateful=False)
    task.token_nll(lines, "train")
    assert task._states["train"] is None


def test_perplexity_is_exp_of_mean_token_nll_over_the_split():
    task = make_task()
    vocab = len(TOKENIZER)
    with torch.no_grad():  # a model that always predicts one fixed distribution
        for p in task.model.parameters():
            p.zero_()
        bias = torch.zeros(vocab)
        bias[3], bias[4] = math.log(3.0), math.log(1.0)  # p(3) = 3 p(4) = 3 p(any other)
        task.model.output.bias.copy_(bias)
    z = 3.0 + (vocab - 1)
    nll3, nll4 = -math.log(3.0 / z), -math.log(1.0 / z)
    batches = [TextBatch(torch.tensor([[3, 3]]), torch.tensor([[3, 4]]), stateful=False),
               TextBatch(torch.tensor([[3, 3]]), torch.tensor([[4, 0]]), stateful=False)]
    logged = {}
    task.log = lambda name, value, **kw: logged.__setitem__(name, value)
    task.all_gather = lambda x: x
    task.start_evaluation("val")
    for batch in batches:
        task.evaluation_step(batch, "val")
    task.end_evaluation("val")
    mean_nll = (nll3 + 2 * nll4) / 3  # three real targets; the pad target is ignored
    assert logged[M.VAL_LOSS] == pytest.approx(mean_nll, rel=1e-5)
    assert logged[M.VAL_PPL] == pytest.approx(math.exp(mean_nll), rel=1e-5)
    assert logged[M.VAL_BPC] == pytest.approx(mean_nll / math.log(2), rel=1e-5)


def test_near_zero_temperature_equals_greedy():
    torch.manual_seed(0)
    logits = torch.randn(50, 30) * 3
    generator = torch.Generator().manual_seed(0)
    assert torch.equal(sample_next(logits, 1e-4, generator=generator), logits.argmax(-1))
    assert torch.equal(sample_next(logits, 0.0), logits.argmax(-1))
    model = RNNLanguageModel(12, 6, 8).eval()
    greedy = generate(model, [3, 4], 10, eos_id=1, temperature=0.0)
    cold = generate(model, [3, 4], 10, eos_id=1, temperature=1e-5,
                    generator=torch.Generator().manual_seed(1))
    assert cold == greedy


def test_top_k_never_emits_a_token_outside_the_k_best():
    torch.manual_seed(0)
    logits = torch.randn(4, 40)
    allowed = logits.topk(5, dim=-1).indices
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        tokens = sample_next(logits, temperature=2.0, top_k=5, generator=generator)
        assert all(int(t) in allowed[i].tolist() for i, t in enumerate(tokens))


def test_top_p_keeps_the_smallest_set_reaching_the_mass():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_logits(logits, top_p=0.8))
    assert kept.tolist() == [[True, True, False, False]]
    assert torch.isfinite(filter_logits(logits, top_p=0.01)).sum() == 1  # the best always stays
    with pytest.raises(ValueError, match="top_p"):
        filter_logits(logits, top_p=0.0)


def test_generate_text_is_reproducible_with_a_seed():
    task = make_task()
    a = task.generate_text("abc", length=20, temperature=1.0, seed=3)
    b = task.generate_text("abc", length=20, temperature=1.0, seed=3)
    assert a == b and a.startswith("abc")


def test_score_text_by_hand_and_independent_of_the_chunk_size():
    task = make_task()
    with torch.no_grad():  # all weights zero: every token gets probability 1 / V
        for p in task.model.parameters():
            p.zero_()
    vocab = len(TOKENIZER)
    score = task.score_text("abc\nde")  # a b c <eos> d e <eos>
    assert score.tokens == 7
    assert score.loss == pytest.approx(math.log(vocab), rel=1e-5)
    assert score.perplexity == pytest.approx(vocab, rel=1e-4)
    assert score.bits_per_char == pytest.approx(math.log2(vocab), rel=1e-5)
    torch.manual_seed(0)
    task = make_task().train()
    whole, chunked = task.score_text("abc de\nfgh"), task.score_text("abc de\nfgh", chunk=3)
    assert chunked.loss == pytest.approx(whole.loss, rel=1e-5)  # the state is carried over
    assert task.training  # scoring leaves the mode as it was
    with pytest.raises(ValueError, match="non-empty"):
        task.score_text("")
