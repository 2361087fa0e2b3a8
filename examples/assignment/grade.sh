#!/usr/bin/env bash
# Grade one submission on the course's panel:  bash grade.sh SUBMISSION_DIR [OUT.json]
#
# SUBMISSION_DIR holds the student's student_policy.py. With EARLYEXP_PANEL_SALT set (the
# instructor's secret, never handed out) the panel is private: other tasks from the same
# distribution than the public test panel students practise on. The grading JSON says which
# panel (salted or not, and its hash) without the salt; the check re-verifies it.
set -euo pipefail
EARLYEXP=${EARLYEXP:-earlyexp}  # e.g. "python -m earlyexp.harness.cli"
submission=$(cd "${1:?usage: bash grade.sh SUBMISSION_DIR [OUT.json]}" && pwd)
out=$(realpath -m "${2:-$submission/grading.json}")
cd "$submission"
$EARLYEXP eval --policy student_policy:act --env EarlyExp/FrozenLake-v0 --split test \
  --tasks "${TASKS:-0}" --out "$out"
$EARLYEXP eval --check "$out"
