"""TensorBoard back end: scalars, audio, spectrogram images, text, hparams (``RUN/tensorboard``)."""
from __future__ import annotations

from pathlib import Path

from toolkit import registry
from toolkit.logger import NullLogger


@registry.register("loggers", "tensorboard")
class TensorBoardLogger(NullLogger):
    """Log to TensorBoard event files under RUN/tensorboard; the run's bindings and final metrics go to the HPARAMS tab."""

    def __init__(self, run_dir):
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def scalars(self, values, step):
        for k, v in values.items():
            self.writer.add_scalar(k, float(v), step)

    def audio(self, tag, audio, rate, step):
        import torch

        a = torch.as_tensor(audio, dtype=torch.float32)
        a = a.mean(0) if a.dim() == 2 else a
        self.writer.add_audio(tag, a.clamp(-1, 1), step, sample_rate=int(rate))

    def image(self, tag, figure, step):
        self.writer.add_figure(tag, figure, step)

    def text(self, tag, text, step):
        self.writer.add_text(tag, text, step)

    def config(self, name, bindings, text):
        # indented: TensorBoard renders text as Markdown, and a code block keeps one binding per line
        self.writer.add_text("config/operative", "\n".join("    " + line for line in text.splitlines()), 0)

    def hparams(self, bindings, metrics):
        from torch.utils.tensorboard.summary import hparams

        # in this run's own folder (SummaryWriter.add_hparams would open a sub-run); the metric values are
        # the scalars of the same tags, logged by the run
        for summary in hparams(dict(bindings), dict(metrics)):
            self.writer.file_writer.add_summary(summary)
        self.writer.flush()

    def close(self):
        self.writer.flush()
        self.writer.close()
