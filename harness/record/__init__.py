"""The session record and the store it lives in: what happened in each hour at the kata, kept in
the kata home for the report an interviewer (or the candidate) reads afterwards.

    store     the one SQLite file: progress and record, short transactions, append-only events
    delta     a save as the change from the previous one
    events    writing the record: the journal every command appends to, a dev session's recorder
    design    the interview's design part: design.md and the points a strong answer covers
    history   reading the record back: sessions and their events, every version of the file
    analysis  what a session shows: tasks over time, mistakes, hints, drills, concepts
    html, markdown   the report, rendered
"""
