"""The analysis layer: from run records to tables, figures and decided claims.

It reads run records (JSON or the tidy CSV of :mod:`.reporting`) and never trains:
:mod:`.reporting` builds Table 1, Figure 1 and the other study outputs, :mod:`.compare` is
the one comparison primitive every verdict uses (Welch intervals, Holm, equivalence, exact
tests of collapse rates), :mod:`.claims` turns the pre-specified estimands of
``claims.yaml`` into outcomes, :mod:`.outputs` writes them, :mod:`.labels` names the runs.
The top library layer: only the CLI (and the repository's ``docgen/``) imports it.
"""
