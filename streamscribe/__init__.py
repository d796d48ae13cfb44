"""StreamScribe: real-time streaming dictation. The command line lives in ``streamscribe.cli``."""

__version__ = "0.1.0"
