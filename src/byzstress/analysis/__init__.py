"""The analysis layer: from published run records to decided claims.

It reads run records (CSV rows) and never trains: :mod:`.compare` is the one comparison
primitive every study's verdict uses (Welch intervals, Holm, equivalence, exact tests of
collapse rates); :mod:`.claims` turns the pre-specified estimands of ``claims.yaml`` into
outcomes."""
