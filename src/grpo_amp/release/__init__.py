"""What leaves the study: ``published`` (the published directory's layout and ``check-published``'s
comparison), ``publish`` (writing it, with provenance) and ``archive`` (the reproducible tarball of
results/published/).
"""
