"""Media in and results out: sources (files, cameras, network streams) and their reconnection,
sinks (annotated MP4, event log, window), still images and data sets, the HTML report and the
batch manifest. Nothing here knows about models or the pipeline."""
