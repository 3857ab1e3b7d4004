"""Running a solution: loading its file, and the worker runner that claims and processes jobs
with N workers until the queue drains."""
