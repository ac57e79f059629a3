#!/usr/bin/env bash
# Install m2ugen with every optional part into ./.venv (CPU torch; no model downloads).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q -U pip
.venv/bin/pip install -q -e '.[all]'
# basic-pitch's metadata pulls tensorflow and downgrades numpy; its ONNX model needs neither.
.venv/bin/pip install -q --no-deps 'basic-pitch==0.4.0'
# tinysoundfont's metadata pulls pyaudio (live playback, needs PortAudio headers); rendering needs neither.
.venv/bin/pip install -q --no-deps 'tinysoundfont==0.3.7'
