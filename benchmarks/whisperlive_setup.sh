#!/usr/bin/env bash
# WhisperLive (PyPI whisper-live) in a virtualenv of its own, for benchmarks/load.py.
# Only what its faster_whisper server path imports is installed: the package's full list pulls
# OpenVINO, TensorRT helpers, openai-whisper and PyAudio, none of which that path uses.
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv-whisperlive
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet --no-deps whisper-live==0.10.0
"$VENV/bin/pip" install --quiet faster-whisper==1.2.0 torch onnxruntime websockets fastapi \
    uvicorn python-multipart scipy av prometheus-client websocket-client numpy requests tqdm
"$VENV/bin/python" -c "import whisper_live.server" && echo "WhisperLive ready in benchmarks/$VENV"
