"""Callbacks that show what the model does, not only how its numbers move."""

from __future__ import annotations

import lightning as L
import matplotlib

matplotlib.use("Agg")  # headless: figures go to TensorBoard, never to a screen
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import EarlyStopping as LightningEarlyStopping  # noqa: E402
from lightning.pytorch.callbacks import ModelCheckpoint, TQDMProgressBar  # noqa: E402
from lightning.pytorch.loggers import TensorBoardLogger  # noqa: E402

from rnnseq import metrics as M  # noqa: E402
from rnnseq.data.batching import collate_examples  # noqa: E402
from rnnseq.plots import attention_heatmap, mel_pair_image  # noqa: E402
from rnnseq.resources import anonymous_memory_mb, release_free_memory  # noqa: E402

ATTENTION_TAG = "val/attention"


class ProgressBar(TQDMProgressBar):
    """Lightning's progress bar, with the training loss shown without a host-device sync per step.

    A metric logged with ``prog_bar=True`` is turned into a Python number after every batch, which
    on a GPU waits for all queued work each step. The tasks therefore log the training loss without
    ``prog_bar``; this bar reads it only on the steps that the loggers write anyway (every
    ``trainer.log_every_n_steps``), where the value is fetched from the device in any case.
    """

    def __init__(self, refresh_rate: int = 1, leave: bool = False,
                 train_metrics: tuple[str, ...] = (M.TRAIN_LOSS,)):
        super().__init__(refresh_rate=refresh_rate, leave=leave)
        self.train_metrics = tuple(train_metrics)
        self._shown: dict[str, float] = {}

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % trainer.log_every_n_steps == 0:
            for name in self.train_metrics:
                value = trainer.callback_metrics.get(name)
                if isinstance(value, torch.Tensor):
                    self._shown[name] = value.item()
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer, pl_module) -> dict:
        shown = {name.split("/")[-1]: f"{value:.3f}" for name, value in self._shown.items()}
        return {**super().get_metrics(trainer, pl_module), **shown}
SAMPLES_TAG = "val/samples"


class ReleaseFreeMemory(L.Callback):
    """After training steps and evaluation batches, hands the memory the C allocator keeps free
    back to the system.

    Batches of changing lengths free blocks of every size each step, and glibc keeps them in its
    heaps, so the process holds several times the memory it uses. Releasing after every step
    holds the peak near the step's own working set, but the next step takes the same memory back
    page by page, and the page faults cost a large share of the CPU time. ``above_mb`` releases
    only when the process holds more than that, so a step reuses what the last one freed until
    the heap has grown past it. Beam search grows the heap the same way, so every validation and
    test batch releases too (under the same ``above_mb``). The measurements are in
    ``experiments/asr/notes/`` (where the memory went, where a step's time went).

    Args:
        every_n_steps: release after every this many optimiser steps, and after every evaluation
            batch (0: never).
        above_mb: only when the process holds more anonymous memory than this (MiB).
    """

    def __init__(self, every_n_steps: int = 1, above_mb: float = 0.0):
        if every_n_steps < 0 or above_mb < 0:
            raise ValueError(f"callbacks.release_free_memory needs every_n_steps >= 0 and "
                             f"above_mb >= 0, got {every_n_steps} and {above_mb}")
        self.every_n_steps = every_n_steps
        self.above_mb = above_mb
        self._available = True

    def _release(self) -> None:
        if not (self._available and self.every_n_steps):
            return
        if self.above_mb and (anonymous_memory_mb() or 0.0) <= self.above_mb:
            return
        self._available = release_free_memory()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.every_n_steps and trainer.global_step % self.every_n_steps == 0:
            self._release()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0) -> None:
        self._release()

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                          dataloader_idx=0) -> None:
        self._release()

    def on_test_start(self, trainer, pl_module) -> None:
        self._release()  # what training left in the heap, before the first test batch


class EarlyStopping(LightningEarlyStopping):
    """Lightning's early stopping, which checks nothing until a validation has run in this fit:
    a step budget that ends within the first epoch (``trainer.max_steps``) reaches the end of
    that epoch with no monitored value, and Lightning's would stop the run with an error. After
    the first validation a missing value is an error again (``strict``)."""

    def on_fit_start(self, trainer, pl_module) -> None:
        self._validated = False

    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking:
            self._validated = True
        super().on_validation_end(trainer, pl_module)

    def _run_early_stopping_check(self, trainer) -> None:
        if getattr(self, "_validated", False):
            super()._run_early_stopping_check(trainer)


def tensorboard_logger(trainer) -> TensorBoardLogger | None:
    """The trainer's TensorBoard logger, if it has one."""
    return next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)


class DataReportPublisher(L.Callback):
    """Keeps the run's data report up to date: ``data_report.json`` in ``run_dir`` and the
    ``data/...`` TensorBoard entries, when fitting starts and whenever fitting or a test adds items
    that failed to load (every rank takes part: each saw its own batches; rank 0 writes). Also
    when a signal stops the run, so the report of an interrupted run is whole."""

    def __init__(self, run_dir, datamodule):
        self.run_dir, self.datamodule = run_dir, datamodule

    def publish(self, trainer, pl_module, first: bool = False) -> None:
        """Merges every rank's failed items into the datamodule's report; writes it when that
        added any (or ``first``)."""
        from rnnseq.reporting import log_data_report
        from rnnseq.tasks.base import gather_rows

        report = self.datamodule.report
        added = report.merge(gather_rows(pl_module.runtime_issues()))
        if trainer.is_global_zero and (added or first):
            self.datamodule.write_report(self.run_dir)
            tb = tensorboard_logger(trainer)
            if tb is not None:
                log_data_report(tb, report, trainer.global_step)

    def on_fit_start(self, trainer, pl_module) -> None:
        self.publish(trainer, pl_module, first=True)

    def on_fit_end(self, trainer, pl_module) -> None:
        self.publish(trainer, pl_module)

    def on_test_end(self, trainer, pl_module) -> None:
        self.publish(trainer, pl_module)

    def on_exception(self, trainer, pl_module, exception) -> None:
        from rnnseq.safeguards import TrainingInterrupted

        if isinstance(exception, TrainingInterrupted):  # every rank stopped together
            self.publish(trainer, pl_module)


class RecentCheckpoints(ModelCheckpoint):
    """Keeps the checkpoints of the latest ``keep`` validations (``recent-step<N>.ckpt``), for
    ``python -m rnnseq.average RUN --last N``; ``keep=0`` keeps none. (Lightning's way to keep the
    last N: rank the checkpoints by ``step``, highest first.)"""

    def __init__(self, dirpath: str, keep: int = 0):
        super().__init__(dirpath=dirpath, filename="recent-step{step}", auto_insert_metric_name=False,
                         monitor="step", mode="max", save_top_k=keep, save_last=False,
                         enable_version_counter=False)


class ValidationSamples(L.Callback):
    """Base of the callbacks that show what the model makes of the first ``num_utterances``
    validation items after every validation epoch (rank 0, TensorBoard only); subclasses
    define :meth:`show`."""

    def __init__(self, num_utterances: int = 3):
        self.num_utterances = num_utterances

    def show(self, writer, step: int, pl_module: L.LightningModule, items: list) -> None:
        """Logs what ``pl_module`` makes of ``items`` (dataset items) with the TensorBoard
        ``writer`` at training step ``step``."""
        raise NotImplementedError

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        dataset = getattr(trainer.datamodule, "datasets", {}).get("valid")
        if logger is None or dataset is None or len(dataset) == 0:
            return
        items = [dataset[i] for i in range(min(self.num_utterances, len(dataset)))]
        self.show(logger.experiment, trainer.global_step, pl_module, items)


class AttentionSamples(ValidationSamples):
    """After every validation epoch, decodes a few fixed validation utterances and logs their
    attention heatmaps (``val/attention/<id>``) and a reference/hypothesis table
    (``val/samples``) to TensorBoard."""

    def show(self, writer, step: int, pl_module: L.LightningModule, items: list) -> None:
        table, figures = self.samples(pl_module, items)
        for tag, figure in figures:
            writer.add_figure(tag, figure, step)
        if figures:
            writer.add_text(SAMPLES_TAG, table, step)

    @staticmethod
    def samples(pl_module: L.LightningModule, items: list) -> tuple[str, list]:
        """Greedy-decodes ``items`` (dataset items) with an encoder-decoder task: a Markdown table
        of references and hypotheses, and one ``(tag, heatmap)`` per item whose rows are the
        emitted tokens of the task's own tokenizer (characters, phonemes, subwords) plus the
        ``<eos>`` row, each labelled."""
        batch = collate_examples(items)
        if batch.empty:
            return "", []
        batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
        hypotheses, attention = pl_module.greedy_hypotheses(batch, return_attention=True)
        memory_lengths = pl_module.model.encoder.output_lengths(batch.feature_lengths)
        symbols = pl_module.tokenizer.symbols
        rows = ["| id | reference | hypothesis |", "|---|---|---|"]
        figures = []
        for i, (utt_id, ref, hyp) in enumerate(zip(batch.ids, batch.texts, hypotheses)):
            rows.append(f"| {utt_id} | {ref} | {pl_module.tokenizer.decode(hyp.tokens)} |")
            # (T + 1, S'): one row per emitted token and the <eos> row (greedy search always
            # ends with one: at the latest it is forced at the length limit)
            weights = attention[i, : len(hyp.tokens) + 1, : int(memory_lengths[i])]
            labels = [symbols[t] for t in hyp.tokens]
            figures.append((f"{ATTENTION_TAG}/{utt_id}",
                            attention_heatmap(weights.float().cpu().numpy(), labels, utt_id)))
        return "\n".join(rows), figures


SYNTHESIS_TAG = "val/synthesis"


class SynthesisSamples(ValidationSamples):
    """After every validation epoch, synthesises a few fixed validation sentences with a
    text-to-speech task, teacher-forced and free-running, and logs to TensorBoard for each:
    the recorded and synthesised mel (``val/synthesis/<id>/mel_teacher_forced``,
    ``.../mel_free_running``), the attention alignment of both (``.../attention_...``), and the
    audio of both through the task's vocoder (``.../audio_...``)."""

    def show(self, writer, step: int, pl_module: L.LightningModule, items: list) -> None:
        batch = collate_examples(items)
        if batch.empty:
            return
        batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
        rate = int(pl_module.hparams.features["sample_rate"])
        hop_ms = float(pl_module.hparams.features["hop_ms"])
        table = pl_module.tokenizer.symbols
        for kind, (mels, lengths, attention) in pl_module.sample_syntheses(batch).items():
            for i, utt_id in enumerate(batch.ids):
                tag = f"{SYNTHESIS_TAG}/{utt_id}"
                reference = batch.features[i, :int(batch.feature_lengths[i])]
                mel = mels[i, :int(lengths[i])]
                writer.add_figure(f"{tag}/mel_{kind}", mel_pair_image(
                    reference, mel, f"{utt_id} ({kind.replace('_', ' ')})", hop_ms), step)
                length = int(batch.target_lengths[i])  # input tokens; the row after is <eos>
                symbols = [table[t] for t in batch.targets[i, :length].tolist()]
                writer.add_figure(f"{tag}/attention_{kind}", attention_heatmap(
                    attention[i, :, :length + 1].t(), symbols,
                    f"{utt_id} ({kind.replace('_', ' ')})",
                    x_label="decoder step", y_label="input token"), step)
                wave = pl_module.vocoder(mel.float())  # on the task's device
                if wave.numel() == 0:  # stopped at once: nothing to hear
                    continue
                writer.add_audio(f"{tag}/audio_{kind}", wave.clamp(-1, 1).unsqueeze(0).cpu(),
                                 step, sample_rate=rate)


GENERATED_TAG = "val/generated"


class GeneratedText(L.Callback):
    """After every validation epoch, logs a text sample from a language model to TensorBoard
    (``val/generated``), drawn with the task's ``generation`` settings and a fixed seed so that
    epochs can be compared."""

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if logger is None:
            return
        text = pl_module.generate_text(**pl_module.hparams.generation)
        # Markdown in TensorBoard's text view: indent four spaces to keep line breaks and spacing.
        block = "\n".join("    " + line for line in text.splitlines())
        logger.experiment.add_text(GENERATED_TAG, block, trainer.global_step)


CONFUSION_TAG = "confusion"
FORECAST_TAG = "forecast"


class SplitFigure(L.Callback):
    """Base of the callbacks that draw one figure after every validation and after the test,
    logged to TensorBoard as ``val/<tag>`` and ``test/<tag>``. Subclasses define :attr:`tag` and
    :meth:`figure` (from what the task kept of the split, or ``None`` when there is nothing)."""

    tag = "figure"

    def figure(self, pl_module: L.LightningModule, split: str):
        """The figure of ``split`` (``val`` or ``test``) from what ``pl_module`` kept, or
        ``None``."""
        raise NotImplementedError

    def _draw(self, trainer: L.Trainer, pl_module: L.LightningModule, split: str) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        logger = next((lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)), None)
        if logger is None:
            return
        fig = self.figure(pl_module, split)
        if fig is not None:
            fig.tight_layout()
            logger.experiment.add_figure(f"{split}/{self.tag}", fig, trainer.global_step)

    def on_validation_end(self, trainer, pl_module) -> None:
        self._draw(trainer, pl_module, "val")

    def on_test_end(self, trainer, pl_module) -> None:
        self._draw(trainer, pl_module, "test")


class ConfusionMatrix(SplitFigure):
    """The classifier's confusion matrix (``val/confusion``, ``test/confusion``; rows are the true
    labels, columns the predicted ones) from the scores the task keeps in ``last_scores``."""

    tag = CONFUSION_TAG

    def figure(self, pl_module, split):
        """The ``(C, C)`` confusion matrix of the split's labels as an image, or ``None``."""
        scores = getattr(pl_module, "last_scores", {}).get(split)
        if scores is None:
            return None
        labels = pl_module.tokenizer.labels
        first = len(pl_module.tokenizer.symbols) - len(labels)  # the specials come first
        matrix = scores.confusion[first:, first:].float().cpu().numpy()
        size = max(4.0, 0.22 * len(labels) + 2)
        fig, ax = plt.subplots(figsize=(size, size))
        ax.imshow(matrix, cmap="Blues", interpolation="nearest")
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{split}: accuracy {scores.accuracy:.3f}, macro F1 {scores.macro_f1:.3f}")
        return fig


class ForecastPlot(SplitFigure):
    """The span's true values against the forecasts from every ``horizon``-th origin (so that
    they tile the span without overlap) and the seasonal-naive forecasts from the same origins
    (``val/forecast``, ``test/forecast``), from what the task keeps in ``last_forecasts``."""

    tag = FORECAST_TAG

    def figure(self, pl_module, split):
        """Truth, forecasts and seasonal-naive forecasts over the split's span, or ``None``."""
        shown = getattr(pl_module, "last_forecasts", {}).get(split)
        scores = getattr(pl_module, "last_scores", {}).get(split)
        if not shown or len(shown["origins"]) == 0 or scores is None:
            return None
        horizon = shown["truth"].shape[1]
        origins = shown["origins"].tolist()
        truth = {o + h: v for o, row in zip(origins, shown["truth"].tolist())
                 for h, v in enumerate(row)}
        positions = sorted(truth)
        fig, ax = plt.subplots(figsize=(10, 4))
        ax.plot([pl_module.time_of(p) for p in positions], [truth[p] for p in positions],
                color="black", linewidth=1.2, label="truth")
        starts = list(range(0, len(origins), horizon))
        if starts[-1] != len(origins) - 1:
            starts.append(len(origins) - 1)  # the last forecast reaches the end of the span
        for i in starts:
            times = [pl_module.time_of(origins[i] + h) for h in range(horizon)]
            ax.plot(times, shown["naive"][i].tolist(), color="grey", linestyle="--",
                    linewidth=0.9, label="seasonal naive" if i == 0 else None)
            ax.plot(times, shown["forecast"][i].tolist(), color="tab:red", linewidth=1.2,
                    label="forecast" if i == 0 else None)
        series = pl_module.hparams.series
        ax.set_xlabel(series.get("unit", "step"))
        ax.set_title(f"{series.get('name', 'series')}, {split}: MAE {scores.mae:.3g} "
                     f"({scores.mae_ratio:.2f} x seasonal naive), RMSE {scores.rmse:.3g}")
        ax.legend(loc="best")
        return fig
