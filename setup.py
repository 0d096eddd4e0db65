"""salfmix: SalfMix and HybridMix (Choi et al., Sensors 2021) with a pretraining and a
Detectron2 detection-transfer pipeline."""
from setuptools import find_packages, setup

setup(
    name="salfmix",
    version="0.1.0",
    description="SalfMix / HybridMix data augmentation and its pretraining + detection-transfer pipeline",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.9",
    packages=find_packages(include=["pretrain", "pretrain.*", "detection", "detection.*", "runs", "runs.*", "pipeline",
                                    "pipeline.*", "salfmix", "salfmix.*"]),
    install_requires=[
        "torch>=2.1",
        "torchvision>=0.16",
        "numpy>=2.0",
        "Pillow>=10.3",
        "fvcore>=0.1.5",
        "pycocotools>=2.0.7",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        # Pretraining metrics as TensorBoard events beside metrics.jsonl.
        "tensorboard>=2.10",
        # OpenCV is not listed: Detectron2's transforms need some cv2, and an environment that
        # already has one (opencv-python-headless on many GPU images) must keep it; installing
        # a second OpenCV distribution beside it breaks `import cv2`. `make install` adds
        # opencv-contrib-python-headless where no cv2 imports; extra [opencv] asks for it.
        # PuzzleMix's graph cut.
        "gco-wrapper>=3.0.8",
        # Detectron2 0.6 imports pkg_resources, which setuptools 82 removed.
        "setuptools<82",
    ],
    extras_require={"test": ["pytest>=7", "scikit-learn>=1.3"], "study": ["scikit-learn>=1.3"],
                    # SaliencyMix's OpenCV reference backend (the default runs without it).
                    "opencv": ["opencv-contrib-python-headless>=4.9"]},
)
