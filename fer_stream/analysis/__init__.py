"""The analysis engine: sources + models + sinks + summary, run by the ``fer-stream`` command, by
``batch`` (on this machine and on Ray) and by ``fleet``'s camera groups.

- :mod:`~fer_stream.analysis.run`: :func:`analyse`, one run's named steps (outputs checked, server, sources, models, sinks, run, summary)
- :mod:`~fer_stream.analysis.layout`: one source or several, what differs between the two, chosen once
- :mod:`~fer_stream.analysis.sources`: each configured source opened (network URLs reconnect); whether to show a window
- :mod:`~fer_stream.analysis.streams`: one source with its pipeline and sinks, and the loop feeding its results to them
- :mod:`~fer_stream.analysis.summary`: the typed summaries (one source's, several sources') and their JSON
- :mod:`~fer_stream.analysis.signals`: Ctrl-C, SIGTERM and SIGHUP stop the pipelines cleanly
- :mod:`~fer_stream.analysis.archive`: one video of an archive: its identity, folder, settings and manifest record
- :mod:`~fer_stream.analysis.local`: an archive on this machine: several videos at once, one classifier
- :mod:`~fer_stream.analysis.ray`: an archive and camera groups on a Ray cluster
"""
