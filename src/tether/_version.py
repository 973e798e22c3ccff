"""The package version, on the ground floor: any module may import it without loading tether."""

__version__ = "0.1.0"
