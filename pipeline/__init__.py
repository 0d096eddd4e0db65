"""The orchestrator: pretraining -> conversion -> detection fine-tuning and evaluation, for one
method or several, and the classification studies; used by ``tools/run_pipeline.py``,
``tools/run_methods.py`` and ``tools/run_study.py``.

It is the one package that imports both stages (``detection`` never imports ``pretrain``, and
``runs`` neither). What to run, skip, resume or refuse is decided from the run manifests
(``run.json``); the run folders keep their own rules (:mod:`runs.folder`).

- :mod:`pipeline.plan`: the (method, seed) plans, every name and config checked up front;
- :mod:`pipeline.stages`: each stage's state from its manifest, and running it (in this process,
  or as the tools in child processes for several GPUs / CPU processes);
- :mod:`pipeline.runner`: one plan through every stage, several plans and the report;
- :mod:`pipeline.study`: a classification study (methods and ablations x seeds) and its report;
- :mod:`pipeline.output`: stage logs and signal forwarding to child processes.
"""
