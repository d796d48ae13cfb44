"""Speech models behind one interface (``base``), chosen by name from ``registry``."""
