"""Installing what the package cannot declare as a dependency: Detectron2 0.6 from its source
release (:mod:`salfmix.install.detectron2`), and the wheels a CUDA machine without network needs
for the GPU kit (:mod:`salfmix.install.wheels`). Standard library only: they run before the
project's dependencies are importable."""
