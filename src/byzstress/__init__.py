"""byzstress: stress-testing Byzantine-robust distributed learning under data heterogeneity."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("byzstress")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
