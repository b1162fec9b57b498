#!/usr/bin/env bash
# Sets everything up on a fresh Debian 12 machine and runs diagd's main job on an embedded default:
# a generated demo model judging frames, with nothing supplied by the user.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
demo=${DIAGD_DEMO_DIR:-$PWD/out/demo}
mkdir -p "$demo"
[ -f "$demo/model/model.json" ] || bin/diagd demo-model --out "$demo/model" --samples "$demo/frames"
echo "[demo] judging the sample frames with the demo model (random weights: the verdicts show the plumbing, not quality)"
bin/diagd detect --model "$demo/model" --json "$demo"/frames/*.png
