"""EmotionClassifier: labels from the config, predictions, thresholds, batches, and folders it refuses."""

import numpy as np
import pytest
import torch
from conftest import ASCEND_ORDER, EXPRESSIONS, LABELS, save_tiny_vit

from fer_stream import EmotionClassifier
from fer_stream.errors import DeviceError, ModelError

CROPS = sorted(EXPRESSIONS.glob("*/*.jpg"))[::12]


def test_labels_come_from_config(clf, ascend_model):
    assert clf.labels == tuple(LABELS)
    assert EmotionClassifier(str(ascend_model), device="cpu").labels == tuple(ASCEND_ORDER)


def test_predictions_are_all_labels_high_to_low(clf):
    preds = clf.predict(CROPS[:5])
    assert len(preds) == 5
    for p in preds:
        assert sorted(l for l, _ in p.probs) == sorted(LABELS)
        values = [v for _, v in p.probs]
        assert values == sorted(values, reverse=True)
        assert sum(values) == pytest.approx(1.0, abs=1e-5)
        assert p.label == p.probs[0][0] and p.confidence == p.probs[0][1]
        assert p.flagged == (p.confidence < 0.7)


def test_results_follow_whichever_label_order_is_loaded(clf, ascend_model):
    """Two copies of one network whose configs list the labels in different orders agree by name."""
    other = EmotionClassifier(str(ascend_model), device="cpu")
    a, b = clf.predict(CROPS), other.predict(CROPS)
    for pa, pb in zip(a, b):
        assert pa.label == pb.label
        for label in LABELS:
            assert pa.as_dict()[label] == pytest.approx(pb.as_dict()[label], abs=1e-5)
    assert len({p.label for p in a}) > 1  # the check means something only if labels vary


def test_relabelled_config_renames_outputs(tiny_model, tmp_path):
    """Same weights, id2label permuted without moving rows: output index i takes the config's name."""
    shuffled = LABELS[1:] + LABELS[:1]
    folder = save_tiny_vit(tmp_path / "relabelled", shuffled, base=tiny_model)
    base = EmotionClassifier(str(tiny_model), device="cpu")
    relabelled = EmotionClassifier(str(folder), device="cpu")
    for pa, pb in zip(base.predict(CROPS[:6]), relabelled.predict(CROPS[:6])):
        assert pb.label == shuffled[LABELS.index(pa.label)]
        assert pb.confidence == pytest.approx(pa.confidence, abs=1e-6)


def test_paths_and_arrays_agree_and_batches_are_capped(tiny_model):
    import cv2

    clf = EmotionClassifier(str(tiny_model), device="cpu", max_batch=3)
    sizes = []
    forward = clf.forward
    clf.forward = lambda x: (sizes.append(x.shape[0]), forward(x))[1]
    arrays = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in CROPS[:7]]
    from_paths = clf.predict(CROPS[:7])
    from_arrays = clf.predict(arrays)
    assert sizes == [3, 3, 1, 3, 3, 1]
    for a, b in zip(from_paths, from_arrays):
        assert a.probs == b.probs


def test_threshold_flags(tiny_model):
    never = EmotionClassifier(str(tiny_model), device="cpu", threshold=0.0)
    always = EmotionClassifier(str(tiny_model), device="cpu", threshold=1.0)
    assert not any(p.flagged for p in never.predict(CROPS[:4]))
    assert all(p.flagged for p in always.predict(CROPS[:4]))


def test_static_batches_pad_and_trim(tiny_model):
    clf = EmotionClassifier(str(tiny_model), device="cpu", max_batch=4)
    x = clf.preprocess(CROPS[:2])
    plain = clf.forward(x)
    clf.static_batch = True  # what an NPU uses: one compiled shape
    padded = clf.forward(x)
    assert padded.shape == (2, 7)
    np.testing.assert_allclose(plain, padded, atol=1e-6)


def test_not_a_model_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(ModelError, match="not a model folder"):
        EmotionClassifier(str(tmp_path), device="cpu")


def test_pickle_weights_are_refused(tiny_model, tmp_path):
    import shutil

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_model, folder)
    (folder / "model.safetensors").unlink()
    torch.save({}, folder / "pytorch_model.bin")
    with pytest.raises(ModelError, match="safetensors"):
        EmotionClassifier(str(folder), device="cpu")


def test_unavailable_devices(tiny_model):
    with pytest.raises(DeviceError, match="torch_npu"):
        EmotionClassifier(str(tiny_model), device="npu")
    with pytest.raises(DeviceError, match="unknown device"):
        EmotionClassifier(str(tiny_model), device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="cuda"):
            EmotionClassifier(str(tiny_model), device="cuda")
