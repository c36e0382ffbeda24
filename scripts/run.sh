#!/usr/bin/env bash
# Set up .venv/ (first call only) and run an experiment; by default the quickstart.
#   scripts/run.sh                                   # configs/quickstart.py -> runs/quickstart
#   scripts/run.sh configs/<name>.py [flags...]      # -> runs/<name>
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh" ""
CONFIG="${1:-configs/quickstart.py}"
[ $# -gt 0 ] && shift
NAME="$(basename "${CONFIG%%:*}" .py)"
WORKDIR="runs/$NAME"
for a in "$@"; do case "$a" in --workdir=*) WORKDIR="${a#--workdir=}";; esac; done
has_workdir=0; for a in "$@"; do case "$a" in --workdir=*) has_workdir=1;; esac; done
args=(--config="$CONFIG" --compilation_cache_dir="$JAX_COMPILATION_CACHE_DIR")
[ $has_workdir = 0 ] && args+=(--workdir="$WORKDIR")
.venv/bin/python -m attnlab.run "${args[@]}" "$@"
echo "attnlab: results are in $WORKDIR/ (summary.json, runs.jsonl, metrics.jsonl, *.png, tb/)"
echo "attnlab: redraw figures with: .venv/bin/python -m attnlab.plot --workdir=$WORKDIR"
