from attnlab._version import __version__
