"""The lab: the tour (the article's paths, measured), bench (routes × sizes), explain (one transfer, reasoned),
report (bench JSON → plots + HTML) and the tour report (tour JSON → diagrams, chart, HTML: tourpage, diagram, chart,
svg). Pure pieces: render, flows, stats, schema, tourpage, diagram, chart, svg; I/O: tour, bench, explain, peer.
"""
