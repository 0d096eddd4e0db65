"""salfmix: SalfMix and HybridMix (Choi et al., Sensors 2021) with a pretraining and a
Detectron2 detection-transfer pipeline."""

from setuptools import find_packages, setup

# Every module of salfmix/cli is a command: ``python -m salfmix.cli.<name>`` or ``salfmix-<name>``.
CLI = (
    "pretrain",
    "train_detection",
    "convert_to_detectron2",
    "run_pipeline",
    "run_methods",
    "run_study",
    "demo",
    "cls_report",
    "voc_report",
    "visualize_mixing",
    "make_demo_data",
    "make_digits_dataset",
)

setup(
    name="salfmix",
    version="0.1.0",
    description="SalfMix / HybridMix data augmentation and its pretraining + detection-transfer pipeline",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    # Three top-level packages only: the two stages the layout names and the project's own
    # namespace (``salfmix.runs``, ``salfmix.pipeline``, ``salfmix.cli``, ...). The shipped configs
    # travel as package data ``salfmix/configs`` (see salfmix/config_files.py).
    packages=find_packages(include=["pretrain", "pretrain.*", "detection", "detection.*", "salfmix", "salfmix.*"])
    + ["salfmix.configs"],
    package_dir={"salfmix.configs": "configs"},
    package_data={
        "salfmix.configs": ["pretrain/*.yaml", "detection/*.yaml", "slurm/*.yaml"],
        "salfmix.install": ["gpu_requirements.txt"],
    },
    entry_points={
        "console_scripts": [f"salfmix-{name.replace('_', '-')}=salfmix.cli.{name}:run" for name in CLI]
        + ["salfmix-install-detectron2=salfmix.install.detectron2:run"]
    },
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy>=2.0",
        "Pillow>=10.3",
        "fvcore>=0.1.5",
        "pycocotools>=2.0.7",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        # The reports' Welch tests (scipy.stats).
        "scipy>=1.10",
        # Pretraining metrics as TensorBoard events beside metrics.jsonl.
        "tensorboard>=2.10",
        # --launcher slurm: jobs, dependencies, requeue (salfmix.pipeline.slurm).
        "submitit>=1.5",
        # OpenCV is not listed: Detectron2's transforms need some cv2, and an environment that
        # already has one (opencv-python-headless on many GPU images) must keep it; installing
        # a second OpenCV distribution beside it breaks `import cv2`. `make install` adds
        # opencv-contrib-python-headless where no cv2 imports; extra [opencv] asks for it.
        # PuzzleMix's graph cut.
        "gco-wrapper>=3.0.8",
        # Detectron2 0.6 imports pkg_resources, which setuptools 82 removed.
        "setuptools<82",
    ],
    extras_require={
        "test": ["pytest>=7", "scikit-learn>=1.3", "ruff==0.17.6"],
        "study": ["scikit-learn>=1.3"],
        # SaliencyMix's OpenCV reference backend (the default runs without it).
        "opencv": ["opencv-contrib-python-headless>=4.9"],
    },
)
