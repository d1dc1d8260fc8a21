"""cpak-cli: knee alignment (LDFA, MPTA, aHKA, JLO, CPAK) from full-leg radiographs."""

__version__ = "0.1.0"
