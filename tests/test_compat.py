"""The names `csl_hf._compat` relies on. These fail loudly when an upgrade of accelerate, transformers or datasets
moves one of them, instead of the speed-ups silently stopping (the probe phases would then be slower, not wrong) or
cache reuse silently never happening."""

import inspect

import accelerate.accelerator
import accelerate.optimizer
import datasets
import pytest
from transformers import Trainer

from csl_hf._compat import dataset_fingerprint, probe_phase_speedups


def test_lomo_check_is_what_the_optimizer_step_calls():
    assert callable(accelerate.optimizer.is_lomo_available)
    # The step looks the name up in its module at call time: that is what memoising the module attribute reaches.
    assert "is_lomo_available()" in inspect.getsource(accelerate.optimizer.AcceleratedOptimizer.step)


def test_release_memory_is_what_free_memory_calls():
    assert callable(accelerate.accelerator.release_memory)
    assert "release_memory(" in inspect.getsource(accelerate.accelerator.Accelerator.free_memory)


def test_grad_norm_hook_keeps_its_signature_and_caller():
    params = list(inspect.signature(Trainer._get_grad_norm).parameters)
    assert params[:3] == ["self", "model", "grad_norm"]
    # The training loop calls it through the instance, so an instance attribute shadows it for one phase.
    assert "self._get_grad_norm(" in inspect.getsource(Trainer)


class _Args:
    def __init__(self, max_grad_norm):
        self.max_grad_norm = max_grad_norm


class _Trainer:
    def __init__(self, max_grad_norm):
        self.args = _Args(max_grad_norm)

    def _get_grad_norm(self, model, grad_norm=None):
        return 1.0


@pytest.mark.parametrize("max_grad_norm", [0.0, 1.0])
def test_speedups_apply_inside_the_block_and_are_undone_after(max_grad_norm):
    trainer = _Trainer(max_grad_norm)
    check, release = accelerate.optimizer.is_lomo_available, accelerate.accelerator.release_memory
    with probe_phase_speedups(trainer):
        assert accelerate.optimizer.is_lomo_available is not check
        assert accelerate.optimizer.is_lomo_available() == check()
        assert accelerate.accelerator.release_memory is not release
        assert accelerate.accelerator.release_memory(object(), object()) == [None, None]
        # The norm is only skipped when nothing is clipped (it is then computed just to be logged).
        assert trainer._get_grad_norm(None) == (None if max_grad_norm <= 0 else 1.0)
    assert accelerate.optimizer.is_lomo_available is check
    assert accelerate.accelerator.release_memory is release
    assert "_get_grad_norm" not in vars(trainer) and trainer._get_grad_norm(None) == 1.0


def test_speedups_are_undone_when_the_phase_fails():
    check = accelerate.optimizer.is_lomo_available
    trainer = _Trainer(0.0)
    with pytest.raises(RuntimeError), probe_phase_speedups(trainer):
        raise RuntimeError("phase failed")
    assert accelerate.optimizer.is_lomo_available is check and "_get_grad_norm" not in vars(trainer)


def test_dataset_fingerprint_follows_the_content():
    a = datasets.Dataset.from_dict({"x": [1, 2, 3]})
    b = datasets.Dataset.from_dict({"x": [1, 2, 4]})
    assert isinstance(a._fingerprint, str)  # the private attribute dataset_fingerprint reads
    assert dataset_fingerprint(a) == a._fingerprint
    assert dataset_fingerprint(a) != dataset_fingerprint(b)
    assert dataset_fingerprint(a.select([0, 1])) != dataset_fingerprint(a)
    assert dataset_fingerprint(a.to_iterable_dataset()) is None and dataset_fingerprint([1, 2]) is None
