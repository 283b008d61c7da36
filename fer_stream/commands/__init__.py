"""One module per ``fer-stream`` command, each with its parser (``parser()``) beside its handler
(``handle(cfg, args)``): analyse (the default, ``--source``), batch, fleet, image, bench (and
detection_bench), parity, evaluate (``eval``), export, train, pull (``models pull``) and settings
(``config``); options holds what their parsers share. The engine they run is
:mod:`fer_stream.analysis`; the objects they need come from :mod:`fer_stream.build`."""
