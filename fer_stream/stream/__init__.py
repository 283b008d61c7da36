"""The streaming pipeline and its elements: threads joined by bounded queues (pipeline), exact-mode
batching (batcher), live classification (live, schedule), tracking, smoothing, overlay, statistics."""
