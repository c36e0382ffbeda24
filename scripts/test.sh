#!/usr/bin/env bash
# Set up .venv/ with the test extras (first call only) and run the whole test suite.
#   scripts/test.sh [pytest args...]
source "$(dirname "${BASH_SOURCE[0]}")/_setup.sh" "test"
mkdir -p "$JAX_COMPILATION_CACHE_DIR"
set +e
.venv/bin/python -m pytest -n 2 --dist worksteal --durations=15 "$@" tests
rc=$?
if [ $rc -eq 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi
exit $rc
