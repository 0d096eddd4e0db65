"""The commands: each module is one (``get_parser()``, ``main(args)``, ``run(argv)``), started as
``python -m salfmix.cli.<name>``, as the console script ``salfmix-<name>`` of an installed package
(underscores as hyphens), or as ``tools/<name>.py`` in a checkout. Each is a thin layer over the
library (``pretrain``, ``detection``, ``salfmix.pipeline``): parse, call, turn errors into one line
and an exit status."""
