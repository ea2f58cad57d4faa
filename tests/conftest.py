import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
# Tiny models on a shared 2-core machine: intra-op threads only add contention (10-100x slower steps when the cores
# are busy). Subprocesses started by tests inherit this too.
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, os.path.dirname(__file__))
pytest_plugins = ["hub_stub"]  # the local_hub fixture (a fake Hugging Face Hub)


def pytest_configure(config):
    config.addinivalue_line("markers", "wheel: builds the wheel and uses it installed in a fresh venv "
                            "(tests/test_wheel.py); deselect with -m 'not wheel'")
