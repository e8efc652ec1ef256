"""getiaction: robot action policies that export to verified, reproducible artifacts.

Example:
    >>> from getiaction.policies import Dummy, DummyConfig
    >>> policy = Dummy(config=DummyConfig(action_shape=(7,)))
    >>> policy.config.action_shape
    (7,)
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("getiaction-export")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
