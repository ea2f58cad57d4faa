"""``python -m csl_hf.cli <command>``: the same as the ``csl-hf`` console command (and what ``accelerate launch -m
csl_hf.cli run ...`` runs)."""

import sys

from .main import main

sys.exit(main())
