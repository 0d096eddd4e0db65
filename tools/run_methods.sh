#!/usr/bin/env bash
# Kept so that existing commands work: the tool is salfmix.cli.run_methods (see its --help).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"; py="${PYTHON:-$root/.venv/bin/python}"; [[ -x "$py" ]] || py=python3
exec "$py" -m salfmix.cli.run_methods "$@"
