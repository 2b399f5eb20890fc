"""The repository's documentation generator (not part of the installed library).

:mod:`.readme` rebuilds the generated blocks of README.md and docs/ from the committed
study outputs; ``byzstress readme`` runs it from a checkout (``--root``).
"""
