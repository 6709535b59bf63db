"""Code that would fail on a GPU, found without one.

On the CPU a tensor made without a device, a CPU copy handed to a module on the GPU, or a solver
that CUDA lacks all pass. Two checks stand in for the GPU:

- a lint over the package (``tests/device_lint.py``) that finds those patterns in the code,
  everywhere, including code that reads tensor values (searches, Griffin-Lim, DTW);
- runs of the models on PyTorch's ``meta`` device, where a tensor left on the CPU by a module
  (a constant made without a device, an output put on the CPU) shows up as it would on CUDA.

The meta device computes no values, so code that reads them stops there by design: those probes
only require that they stop at the read and not at a device mismatch. What neither can see (a
kernel that CUDA lacks, numbers that differ, speed) is ``bench/gpu_check.py``'s job.
"""

import contextlib
import functools
from pathlib import Path

import pytest
import torch

from rnnseq import metrics as M
from rnnseq.data.audio import FeatureConfig, FeatureNormalizer, LogMel, SpecAugment
from rnnseq.data.vocoder import GriffinLimVocoder
from rnnseq.models.classifier import SequenceClassifier
from rnnseq.models.decoder import AttentionDecoder
from rnnseq.models.encoder import RecurrentEncoder
from rnnseq.models.language_model import RNNLanguageModel
from tests.device_lint import check_package, check_source
from tests.test_models import ATTENTIONS, _query_dim
from tests.test_tacotron import tiny_tacotron

REPO = Path(__file__).resolve().parent.parent
META = torch.device("meta")
MIXED_DEVICES = ("same device", "expected device", "at least two devices")


# -- the lint -------------------------------------------------------------------------------------
def test_the_package_passes_the_device_lint():
    findings = check_package(REPO)
    assert not findings, ("code that would fail or wait on a GPU (fix it, or mark a deliberate "
                          "host tensor '# host: <reason>'):\n" + "\n".join(map(str, findings)))


RULE_CASES = {  # rule -> (code it must flag, code it must pass)
    "factory": ("def f(x):\n    return torch.zeros(3)\n",
                "def f(x):\n    return torch.zeros(3, device=x.device)\n"
                "class M:\n    def __init__(self):\n"
                "        self.register_buffer('w', torch.zeros(3))\n"),
    "numpy": ("def f(x):\n    return x.clamp(0, 1).numpy()\n",
              "def f(x):\n    return x.clamp(0, 1).cpu().numpy()\n"),
    "cpu-copy": ("def f(x, vocoder):\n    return vocoder(x.float().cpu())\n",
                 "def f(x, writer):\n    writer.add_audio('a', x.cpu(), 0)\n"
                 "    return x.cpu().tolist()\n"),
    "host-read-in-step": ("def evaluation_step(self, batch, split):\n"
                          "    self.sums += float(self.loss(batch))\n",
                          "def evaluation_step(self, batch, split):\n"
                          "    self.accumulate(loss=self.loss(batch), items=3.0)\n"),
    "module-outside-init": ("def round_trip(self, wave):\n    return LogMel(self.config)(wave)\n",
                            "def round_trip(self, wave):\n"
                            "    return LogMel(self.config).to(self.device)(wave)\n"
                            "class T:\n    def __init__(self):\n        self.m = LogMel()\n"),
    "cpu-only-solver": ("def f(a, b):\n    with torch.random.fork_rng(devices=[]):\n"
                        "        torch.manual_seed(0)\n"
                        "        return torch.linalg.lstsq(a, b, driver='gelsd')\n",
                        "def f(a, b):\n    with torch.random.fork_rng(devices=[a.device]):\n"
                        "        torch.manual_seed(0)\n"
                        "        return torch.linalg.lstsq(a, b, driver='gels')\n"
                        "def g(build):\n    with torch.random.fork_rng(devices=[]):\n"
                        "        return build()\n"),
    "literal-cpu": ("def f(path):\n    task = load(path, map_location='cpu')\n"
                    "    with torch.autocast('cpu'):\n        return task.to('cpu')\n",
                    "def f(path, device):\n    task = load(path, map_location=device)\n"
                    "    with torch.autocast(device.type):\n        return task.to(device)\n"),
}


@pytest.mark.parametrize("rule", RULE_CASES)
def test_each_lint_rule_flags_its_pattern_and_passes_the_right_form(rule):
    flagged, right = RULE_CASES[rule]
    assert rule in {f.rule for f in check_source(flagged)}
    assert [f for f in check_source(right) if f.rule == rule] == []


def test_the_lint_reports_every_finding_and_honours_host_marks_with_a_reason():
    source = ("def f(x):\n    a = torch.zeros(3)\n    b = torch.ones(3)  # host: built for a plot\n"
              "    # host: a host batch, moved by the caller\n    c = torch.arange(3)\n"
              "    d = torch.eye(3)  # host:\n    return x.numpy()\n")
    assert [(f.line, f.rule) for f in check_source(source)] == [
        (2, "factory"), (6, "factory"), (7, "numpy")]  # a mark without a reason does not count


def test_the_cpu_only_solver_rule_applies_outside_device_code_too():
    source = "import torchaudio\ninv = torchaudio.transforms.InverseMelScale(10, 4)\n"
    assert [f.rule for f in check_source(source, device_code=False)] == ["cpu-only-solver"]
    assert check_source("x = torch.zeros(3)\n", device_code=False) == []


# -- runs on the meta device ----------------------------------------------------------------------
@pytest.fixture
def meta_autocast(monkeypatch):
    """Autocast has no meta device: asking whether it is on there says no, and turning it off
    there does nothing (the models ask and turn it off around float32-only parts)."""
    enabled, autocast = torch.is_autocast_enabled, torch.autocast
    monkeypatch.setattr(torch, "is_autocast_enabled",
                        lambda *a: False if a and str(a[0]) == "meta" else enabled(*a))
    monkeypatch.setattr(torch, "autocast", lambda device_type, *a, **k: (
        contextlib.nullcontext() if str(device_type) == "meta" else autocast(device_type, *a, **k)))


def on_meta(module: torch.nn.Module | None, call, *inputs):
    """``call(*inputs)`` with ``module`` (built on the CPU) moved to the meta device and every
    input tensor made there; returns the outputs, each checked to be on the meta device."""
    if module is not None:
        module.to(META)
    outputs = call(*inputs)
    flat = outputs if isinstance(outputs, (tuple, list)) else [outputs]
    for tensor in (t for t in flat if isinstance(t, torch.Tensor)):
        assert tensor.device == META, f"an output is on {tensor.device}, not its inputs' device"
    return outputs


def meta(*shape, dtype=torch.float32):
    return torch.empty(*shape, dtype=dtype, device=META)


LENGTHS = [13, 9, 4]


@pytest.mark.parametrize("subsampling", ["conv", "pyramid", "vgg", "none"])
@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn", "lstmp", "peephole_lstm", "ln_lstm"])
def test_every_encoder_and_cell_runs_on_its_inputs_device(meta_autocast, subsampling, cell):
    encoder = RecurrentEncoder(input_dim=6, hidden_size=6, num_layers=3, cell=cell,
                               subsampling=subsampling, conv_channels=2, dropout=0.1).train()
    lengths = torch.tensor(LENGTHS, device=META)
    on_meta(encoder, encoder, meta(3, 13, 6), lengths)


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_the_attention_decoder_runs_on_its_inputs_device(meta_autocast, attention):
    decoder = AttentionDecoder(vocab_size=9, memory_dim=6, attention=ATTENTIONS[attention],
                               embed_dim=4, hidden_size=_query_dim(attention), num_layers=2,
                               input_feeding=True, dropout=0.1).train()
    mask = torch.ones(3, 7, dtype=torch.bool, device=META)
    tokens = meta(3, 5, dtype=torch.long)
    on_meta(decoder, decoder, meta(3, 7, 6), mask, tokens)
    on_meta(None, functools.partial(decoder, sampling_probability=0.5), meta(3, 7, 6), mask, tokens)


def test_tacotron_classifier_and_language_model_run_on_their_inputs_device(meta_autocast):
    tacotron = tiny_tacotron(prenet_dropout=0.5).train()
    on_meta(tacotron, lambda *a: tuple(tacotron(*a)), meta(2, 6, dtype=torch.long),
            torch.tensor([6, 4], device=META), meta(2, 8, 6), torch.tensor([8, 6], device=META))
    encoder = RecurrentEncoder(input_dim=6, hidden_size=4, num_layers=1, conv_channels=2)
    classifier = SequenceClassifier(encoder, num_classes=3).train()
    on_meta(classifier, classifier, meta(3, 13, 6), torch.tensor(LENGTHS, device=META))
    lm = RNNLanguageModel(vocab_size=9, embed_dim=4, hidden_size=5, num_layers=2).train()
    on_meta(lm, lambda tokens: lm(tokens)[0], meta(2, 5, dtype=torch.long))


def test_features_and_their_transforms_run_on_their_inputs_device():
    logmel = LogMel(FeatureConfig())
    on_meta(logmel, logmel, meta(16000))
    normalizer = FeatureNormalizer(80, utterance_mean=True)
    mask = torch.ones(3, 13, dtype=torch.bool, device=META)
    on_meta(normalizer, normalizer, meta(3, 13, 80), mask)
    augment = SpecAugment(freq_masks=1, freq_width=5, time_masks=1, time_width=3,
                          freq_warp=0.1).train()
    on_meta(augment, augment, meta(3, 13, 80))


def test_synthesis_scoring_makes_its_constants_on_its_inputs_device():
    on_meta(None, M.mel_cepstra, meta(20, 80))
    vocoder = GriffinLimVocoder(FeatureConfig())
    on_meta(vocoder, vocoder, meta(2, 80))  # too short to reconstruct: silence, on that device


@pytest.mark.parametrize("name", ["griffin_lim", "dtw"])
def test_code_that_reads_values_stops_at_the_read_not_at_a_device_mismatch(name):
    """Griffin-Lim's and DTW's loops read values, so on meta they stop; they must get there
    without meeting a tensor on another device on the way."""
    vocoder = GriffinLimVocoder(FeatureConfig()).to(META)
    call = {"griffin_lim": lambda: vocoder(meta(20, 80)),
            "dtw": lambda: M.dtw_path_mean(meta(5, 6))}[name]
    with pytest.raises((NotImplementedError, RuntimeError)) as stopped:
        call()
    message = str(stopped.value)
    assert not any(text in message for text in MIXED_DEVICES), message
    assert "meta" in message.lower()


def test_the_fusion_language_model_follows_the_memory_to_its_device(meta_autocast):
    """``beam_search`` is handed a language model that lives wherever its caller loaded it; the
    scorers must take it to the memory's device before the first step."""
    from rnnseq.decoding.scorers import scorer_sources
    from tests.test_lm_fusion import _fusion

    fusion = _fusion()  # built on the CPU
    mask = torch.ones(2, 7, dtype=torch.bool, device=META)
    sources = scorer_sources(None, meta(2, 7, 6), mask, vocab_size=9, blank_id=0, eos_id=1,
                             lm=fusion)
    assert sources["lm"].index.device == META
    assert next(sources["lm"].model.parameters()).device == META


def test_a_decoding_sweep_moves_its_batches_and_autocast_to_the_device_it_is_given(
        smoke_run, monkeypatch):
    """``evaluate --sweep`` decodes where ``--device`` says (a GPU by default where there is one):
    every batch goes to that device and autocast is set up for that device's type."""
    from rnnseq import resources
    from rnnseq.evaluation import sweep_decoding
    from rnnseq.tasks.speech_to_text import SpeechToText

    moved, autocast_devices = [], []
    transfer, autocast_for = SpeechToText.transfer_batch_to_device, resources.autocast_for
    monkeypatch.setattr(SpeechToText, "transfer_batch_to_device", lambda self, batch, device, i: (
        moved.append(torch.device(device)) or transfer(self, batch, device, i)))
    monkeypatch.setattr(resources, "autocast_for", lambda device, precision: (
        autocast_devices.append(device) or autocast_for(device, precision)))
    record = sweep_decoding(smoke_run, {"beam_size": [1]}, split="valid", device="cpu")
    assert record["items"] > 0 and moved and set(moved) == {torch.device("cpu")}
    assert autocast_devices and set(autocast_devices) == {torch.device("cpu")}
