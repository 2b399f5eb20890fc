"""The threat catalogue: what Byzantine clients send and how the server aggregates.

:mod:`.grammar` parses the spec strings (``trmean(nnm)``, ``minmax[dir=sign]``) that
:mod:`.attacks`, :mod:`.defenses` and the simulator's splits share; :mod:`.plugins` loads
users' extra attacks and defenses. The lowest layer: it imports nothing else of byzstress.
"""
