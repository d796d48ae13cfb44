#!/usr/bin/env bash
# WhisperLiveKit (PyPI whisperlivekit) in a virtualenv of its own, for benchmarks/load.py
# --server whisperlivekit. Its faster-whisper backend with the LocalAgreement policy is what
# runs here: its default policy, SimulStreaming, needs PyTorch Whisper weights (.pt), which no
# package registry ships. torchaudio is in its requirements but nothing on that path imports it,
# so it is left out (the registry has no torchaudio for the newest torch).
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv-whisperlivekit
TORCH=${TORCH_WHEEL:-torch}  # a CPU-only wheel, if you have one, saves the CUDA libraries
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet "$TORCH"
"$VENV/bin/pip" install --quiet --no-deps whisperlivekit==0.2.26
"$VENV/bin/pip" install --quiet faster-whisper==1.2.1 fastapi uvicorn websockets librosa \
    soundfile tiktoken huggingface-hub tqdm python-multipart "starlette>=1.3.1"
"$VENV/bin/python" -c "import whisperlivekit.basic_server" && echo "WhisperLiveKit ready in benchmarks/$VENV"
