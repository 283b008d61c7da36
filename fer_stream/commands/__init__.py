"""One module per ``fer-stream`` command (run, image, pull, bench, parity, eval, train, export,
batch and its Ray side); each turns settings into objects with :mod:`fer_stream.build` and runs them."""
