"""What the entry points print: known-harmless notices of third-party libraries are kept out of
the console, so that what remains (rnnseq's own warnings included, never filtered) deserves a look.

Only ``python -m rnnseq.*`` commands call :func:`quiet_third_party`; importing rnnseq as a library
changes no warning or logging setting.
"""

from __future__ import annotations

import logging
import warnings

# Lightning's advertisement for its cloud logger, printed at every Trainer construction.
_ADVERTISEMENT = "try installing [litlogger]"
# Lightning 2.6 calls a torch pytree API that torch 2.14 deprecates; nothing for users to change.
_LEAFSPEC = r"`isinstance\(treespec, LeafSpec\)` is deprecated"


class _DropMessages(logging.Filter):
    """Drops log records whose message contains any of ``fragments``."""

    def __init__(self, *fragments: str):
        super().__init__()
        self.fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self.fragments)


def quiet_third_party() -> None:
    """Silences the notices above (exactly those: matched by their text)."""
    import lightning.pytorch  # noqa: F401  (sets the logger that rank_zero_info writes to)
    from lightning_utilities.core import rank_zero

    rank_zero.log.addFilter(_DropMessages(_ADVERTISEMENT))
    warnings.filterwarnings("ignore", message=_LEAFSPEC)
