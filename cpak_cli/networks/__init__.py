"""networks: the landmark and detector networks, their crops, weights files and model cards."""

import os

# OpenMP threads that wait by sleeping, not spinning: on a small shared CPU (2 cores, other
# processes busy) torch's spinning worker threads made a cold `cpak measure` up to twice as slow.
# Read when torch is first imported (every module of this package imports torch locally, so this
# runs first); a user's setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
