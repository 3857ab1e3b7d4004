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
* ``supervisor.py`` — no pass without a report: a grading ``pytest`` runs its tests in a forked
  child and gives the verdict itself, from the child's report, whatever the solution did to the
  child (``os._exit``, a signal, a hang); ``tamper.py`` — what a solution may not do to the
  grader (an audit hook refusing files, signals, processes; the harness's functions checked for
  replacement after every test; the kata's schema checked too).
* ``invariants.py`` — the contract's end-to-end invariants, judged in one place (Task D, end to
  end, the runner's tests and the stress command share it).
* ``choreography.py`` — fake services that hold calls, so that "two workers inside one API call"
  and "a worker paused mid-call" happen every time; ``exploration.py`` — hypothesis over fault
  plans and crash points for Task D; ``processes.py`` — claims from separate OS processes.
* ``step_faults.py`` — Task D's faults one API call at a time: a job placed at any step, a
  script for one call of it, and what ``process_job`` did wrong with it; ``afterlife.py`` — a
  worker that caught its crash and kept going: what it did, and which handler caught it.
* ``claim_race.py`` — Task A's race, choreographed: a worker paused right after a read of its
  claim while another worker claims, requeues, fails or completes the job it read.
* ``send_drain.py``, ``send_judge.py``, ``send_kit.py``, ``send_race.py``,
  ``send_processes.py`` — Task G: workers that reserve with the candidate's limiter and send
  with the harness's own send against SendGrid's account-wide bucket (``world/account.py``),
  in the grading process (two loads of the solution, as two processes) or in OS processes
  forked from a server; the verdicts, bounded on the side a loaded machine cannot cross; and
  the race of workers paused after reading the account's state.
* ``blocking.py`` — ``time.sleep`` from the solution fails at its line; ``asyncio.sleep`` inside
  a transaction is a ledger violation (counted, not timed); ``clock.py`` — the grading process
  lives at UTC+05:30, so naive local time is wrong every run.
* ``test_*.py`` — the graded tests, one file per task, each test marked with its task.
"""
