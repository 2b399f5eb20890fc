"""Runs and studies: from ``config.yaml`` to run records on disk.

:mod:`.study` expands a study into run specs, :mod:`.runner` trains one and writes its
record (:mod:`.record`), :mod:`.storage` writes atomically and checkpoints, :mod:`.archive`
packs and restores published records, :mod:`.verify` retrains them. It imports the
simulator and the threat catalogue, never the analysis.
"""
