"""The only place where csl_hf reaches past a library's public API. Every entry says why it is needed, is applied as
narrowly as possible, and is covered by ``tests/test_compat.py``, which fails loudly when a name it relies on moves.

1. `probe_phase_speedups`: while a *probe* phase trains (a linear head on cached features, ~0.1 ms per optimiser
   step), two per-call costs of accelerate would dominate the run:

   * ``AcceleratedOptimizer.step`` asks ``accelerate.optimizer.is_lomo_available()`` on every step, which scans
     ``sys.path`` with ``importlib`` (~0.06 ms, half a probe step). Installed packages do not change during a phase,
     so the answer is memoised for the phase;
   * each phase's ``Trainer.train()`` starts with ``Accelerator.free_memory()``, whose ``release_memory`` runs
     ``gc.collect()`` (~0.2 s with transformers loaded, more than a whole probe phase on small data). A probe phase
     allocates no reference cycles worth collecting, so the collection is skipped for the phase.

   * without clipping (``max_grad_norm <= 0``, the paper's setting) ``Trainer._get_grad_norm`` still computes the
     full gradient norm every step only to log it, which costs as much as the rest of a probe step; for the phase
     the trainer's instance answers ``None`` instead (the norm is then simply not logged).

   All three are restored when the phase ends; full-mode phases (real models, real data) run untouched.
2. `dataset_fingerprint`: ``datasets.Dataset`` keeps the hash of its content and transforms in ``_fingerprint`` (the
   key of its own cache) but has no public accessor; the labeling pass uses it to tell whether ``OUTPUT_DIR/cache``
   was labeled from the same data.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

__all__ = ["probe_phase_speedups", "dataset_fingerprint"]


@contextlib.contextmanager
def probe_phase_speedups(trainer) -> Iterator[None]:
    """Memoise ``accelerate.optimizer.is_lomo_available``, skip ``gc.collect`` in ``Accelerator.free_memory`` and,
    without clipping, the logged-only gradient norm of ``trainer``, for the duration of the block (see the module
    docstring). A name that is missing is simply not patched (the speed-up is lost, results are not affected);
    ``tests/test_compat.py`` catches that."""
    import accelerate.accelerator
    import accelerate.optimizer

    saved = []
    check = getattr(accelerate.optimizer, "is_lomo_available", None)
    if callable(check):
        saved.append((accelerate.optimizer, "is_lomo_available", check))
        accelerate.optimizer.is_lomo_available = functools.lru_cache(maxsize=None)(check)
    release = getattr(accelerate.accelerator, "release_memory", None)
    if callable(release):
        saved.append((accelerate.accelerator, "release_memory", release))
        accelerate.accelerator.release_memory = _release_without_gc
    skip_norm = trainer.args.max_grad_norm <= 0 and callable(getattr(type(trainer), "_get_grad_norm", None))
    if skip_norm:
        trainer._get_grad_norm = _no_grad_norm  # an instance attribute shadows the method for this phase only
    try:
        yield
    finally:
        if skip_norm:
            del trainer._get_grad_norm
        for module, name, original in reversed(saved):
            setattr(module, name, original)


def _no_grad_norm(model, grad_norm=None):
    """``Trainer._get_grad_norm`` for an unclipped probe phase: the norm clipping computed (none), not a new one."""
    return grad_norm


def _release_without_gc(*objects: Any) -> list:
    """``accelerate.utils.release_memory`` without the garbage collection and device-cache clearing: drops the
    references (what ``free_memory`` needs) and nothing else."""
    return [None] * len(objects)


def dataset_fingerprint(dataset: Any) -> str | None:
    """The content fingerprint of a map-style ``datasets.Dataset`` (``None`` for streams and other objects)."""
    fingerprint = getattr(dataset, "_fingerprint", None)
    return fingerprint if isinstance(fingerprint, str) and fingerprint else None
