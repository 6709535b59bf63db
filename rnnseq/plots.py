"""Figures of what a model sees and does, shared by the TensorBoard callbacks and the notebooks.

Every function returns a matplotlib ``Figure`` and leaves the backend alone (the callbacks pick a
headless one; a notebook keeps its inline one).
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch


def _finished(fig):
    """Lays the figure out and hands it to the caller alone: pyplot forgets it, so a notebook
    shows it once (as the returned value) and long training runs do not accumulate figures."""
    fig.tight_layout()
    plt.close(fig)
    return fig


def attention_heatmap(weights, symbols: Sequence[str], title: str,
                      x_label: str = "encoder frame", y_label: str = "output symbol"):
    """``(T, S)`` attention weights as an image, output symbols on the vertical axis (the last row
    is ``<eos>`` when there is one more row than symbols)."""
    weights = np.asarray(weights.float().cpu() if isinstance(weights, torch.Tensor) else weights)
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.12 * weights.shape[0] + 1)))
    ax.imshow(weights, aspect="auto", origin="lower", interpolation="nearest", cmap="viridis")
    labels = [*("_" if s == " " else s for s in symbols), "<eos>"][: weights.shape[0]]
    if len(labels) <= 80:
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title)
    return _finished(fig)


def log_mel_image(features, title: str, hop_ms: float = 10.0):
    """``(S, F)`` log-mel features of one utterance (real frames only) as a spectrogram."""
    features = np.asarray(features.float().cpu() if isinstance(features, torch.Tensor) else features)
    fig, ax = plt.subplots(figsize=(8, 3))
    seconds = features.shape[0] * hop_ms / 1000
    image = ax.imshow(features.T, aspect="auto", origin="lower", interpolation="nearest",
                      cmap="magma", extent=(0, seconds, 0, features.shape[1]))
    fig.colorbar(image, ax=ax, label="log energy")
    ax.set_xlabel("seconds")
    ax.set_ylabel("mel bin")
    ax.set_title(title)
    return _finished(fig)


def mel_pair_image(reference, synthesised, title: str, hop_ms: float = 12.5):
    """Two ``(S, F)`` log-mel spectrograms of one sentence, the recording above and the
    synthesis below, on one time axis (they may differ in length)."""
    frames = [np.asarray(x.float().cpu() if isinstance(x, torch.Tensor) else x)
              for x in (reference, synthesised)]
    seconds = max(f.shape[0] for f in frames) * hop_ms / 1000
    low = min(float(f.min()) for f in frames if f.size)
    high = max(float(f.max()) for f in frames if f.size)
    fig, axes = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    for ax, features, label in zip(axes, frames, ("recording", "synthesis")):
        length = features.shape[0] * hop_ms / 1000
        ax.imshow(features.T, aspect="auto", origin="lower", interpolation="nearest",
                  cmap="magma", extent=(0, length, 0, features.shape[1]), vmin=low, vmax=high)
        ax.set_xlim(0, seconds)
        ax.set_ylabel(f"{label}\nmel bin")
    axes[-1].set_xlabel("seconds")
    axes[0].set_title(title)
    return _finished(fig)


def metric_against(values: Sequence, metrics: Sequence[float | None], x_label: str,
                   y_label: str, title: str = ""):
    """One point per job: a metric against the value of a hyper-parameter. Numeric values get a
    numeric axis (log-scaled when they span more than a factor of 20), others one tick each;
    jobs without the metric are left out."""
    points = [(v, m) for v, m in zip(values, metrics) if m is not None]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    try:
        xs = [float(v) for v, _ in points]
        order = np.argsort(xs)
        ax.plot(np.array(xs)[order], np.array([m for _, m in points])[order], marker="o")
        if xs and min(xs) > 0 and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
    except ValueError:  # categorical values (e.g. model/attention=dot)
        labels = [str(v) for v, _ in points]
        ax.plot(range(len(points)), [m for _, m in points], marker="o", linestyle="none")
        ax.set_xticks(range(len(points)), labels)
    ax.set_xlabel(x_label)
    ax.set_ylabel(y_label)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return _finished(fig)
