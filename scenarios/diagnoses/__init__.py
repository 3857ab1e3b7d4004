"""Each drill's diagnosis, one module a drill (named as its incident's module): the question and
its rubric, the signature and the symptom, the explanation, the refutations of the wrong answers.
The phrases several of them quote are ``evidence``'s; the catalogue pairs each with its incident.
"""
