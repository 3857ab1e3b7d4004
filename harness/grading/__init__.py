"""The grader: ``pytest`` in the project root grades ``candidate/solution.py``.

* ``plugin.py`` — the pytest plugin (the root ``conftest.py`` loads it): options
  (``--solution``, ``--db``, ``--kata-seed``, ``--kata-tier``, ``--kata-json``), fixtures,
  diagnoses instead of tracebacks, the scorecard.
* ``kit.py`` — what the task tests use to drive a solution: fresh campaigns, claims made by the
  harness (so that Tasks C and D never depend on Task A), the candidate's calls with a phase
  recorded for timeout messages, and drivers that accept every correct retry style.
* ``diagnosis.py`` — turning a candidate's exception or a broken invariant into one sentence in
  the candidate's terms, with the evidence.
* ``scorecard.py`` — per-task results, the rich scorecard and the JSON results file.
* ``invariants.py`` — the contract's end-to-end invariants, judged in one place (Task D, end to
  end, the runner's tests and the stress command share it).
* ``choreography.py`` — fake services that hold calls, so that "two workers inside one API call"
  and "a worker paused mid-call" happen every time; ``exploration.py`` — hypothesis over fault
  plans and crash points for Task D; ``processes.py`` — claims from separate OS processes.
* ``test_*.py`` — the graded tests, one file per task, each test marked with its task.
"""
