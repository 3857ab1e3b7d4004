"""What a drill does besides watching production's code, one option a module: ``--explain``
(``explain``), ``--fixed`` (``fixed``), ``--replay`` (``replay``), ``--report`` (``report``) and
``--solution`` (``solution``). Each is a function of the ``Drill`` that was asked for it."""
