"""The orchestrator: pretraining -> conversion -> detection fine-tuning and evaluation, for one
method or several, and the classification studies; used by ``salfmix.cli.run_pipeline``,
``salfmix.cli.run_methods`` and ``salfmix.cli.run_study``.

It is the one package that imports both stages (``detection`` never imports ``pretrain``, and
``runs`` neither). What to run, skip, resume or refuse is decided from the run manifests
(``run.json``); the run folders keep their own rules (:mod:`salfmix.runs.folder`).

- :mod:`salfmix.pipeline.plan`: the (method, seed) plans, every name and config checked up front;
- :mod:`salfmix.pipeline.stages`: each stage's state from its manifest, and running it (in this process,
  or as the tools in child processes for several GPUs / CPU processes);
- :mod:`salfmix.pipeline.runner`: one plan through every stage, several plans and the report;
- :mod:`salfmix.pipeline.study`: a classification study (methods and ablations x seeds) and its report;
- :mod:`salfmix.pipeline.output`: stage logs and signal forwarding to child processes.
"""
