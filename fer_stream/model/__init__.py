"""The models: the expression classifier (its backends, preprocessing, hub loading, ONNX Runtime),
the face detectors (MediaPipe and LiteRT BlazeFace, their model files, input quality), devices,
and the classifier service that serves several pipelines."""
