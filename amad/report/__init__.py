"""The ``report`` stage's work: the summary table (:mod:`~amad.report.summary`) and the pictures
behind it (:mod:`~amad.report.figures`)."""
