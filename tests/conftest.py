from __future__ import annotations

import sys
from pathlib import Path

# Tests import their helpers as ``tests.support``; make the checkout importable without install.
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
