"""Pure decisions: given measured figures and the clock (passed in), what to do. No I/O; each
module's rules are written at its top."""
