"""The lab: the tour (the article's paths, measured), bench (routes × sizes), explain (one transfer, reasoned),
and report (bench JSON → plots + HTML). Pure pieces: render, flows, stats, schema; I/O: tour, bench, explain, peer.
"""
