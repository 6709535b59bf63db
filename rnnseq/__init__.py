"""rnnseq: recurrent sequence-to-sequence models composed from Hydra configs.

Importing the package sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy: on small
machines OpenMP's default spin-waiting makes every other busy process (a DataLoader worker, a
second job) slow training steps down several times. It must happen before torch is imported.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
