"""Check an EasyR1 / Long-RL checkout's example scripts against longrl.

    python scripts/check_upstream_recipes.py PATH/TO/EasyR1 [PATH/TO/Long-RL ...] [--run-one-step] [--only TEXT]

For each ``examples/**/*.sh`` that runs ``verl.trainer.main``: does it compose (``--cfg job``) with its own
arguments, or which feature does longrl refuse; with ``--run-one-step``, does one tiny CPU step train with only the
model and data paths changed, and what did the script's own reward file return. Ends with a markdown table.
The work is done by :mod:`longrl.trainer.upstream_recipes`.
"""

from __future__ import annotations

import sys

from longrl.trainer.upstream_recipes import main

if __name__ == "__main__":
    sys.exit(main())
