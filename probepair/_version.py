"""The version, a leaf every layer may import (the package face imports it too)."""

__version__ = "0.1.0"
