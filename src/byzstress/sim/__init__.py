"""The simulator: one run of Byzantine D-SGD from its :class:`~.spec.RunSpec`.

:mod:`.spec` holds every knob of a run; :mod:`.data`, :mod:`.splits`, :mod:`.partition`,
:mod:`.models` and :mod:`.gradients` are the pieces; :mod:`.training` steps all clients at
once and :mod:`.batch` steps several runs together. It imports only :mod:`byzstress.threats`.
"""
