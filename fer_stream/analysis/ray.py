"""Ray: the engine of ``fer-stream batch --ray`` (an archive across machines) and ``fer-stream fleet`` (camera groups).

Ray does the scheduling, placement, retries and object transfer; this module only says what runs
where (``pip install 'fer-stream[ray]'``):

* batch: one Ray task per video (a video's frames must stay in order for tracking), each decoding
  and detecting on its node; one classifier actor per node (on its GPU, ``num_gpus=1``, or an
  Ascend NPU, custom resource ``NPU``) batches the faces of every video on that node through a
  :class:`~fer_stream.model.service.ClassifierService`. A task writes its outputs in a
  temporary folder and returns them; the driver writes them into ``DIR/<name>/`` and the
  manifest. Ray re-runs the task of a worker or node that died (``max_retries``); a video that
  fails by itself (unreadable file) is recorded as failed, not retried. Tasks are spread over the
  nodes; a classifier actor reserves no CPU (its video tasks wait while it runs), so a node of one
  CPU runs a video and its classifier. Tasks report their frame counts to a small actor the
  driver reads once a second for its progress bars.
* fleet: one actor per camera group (a config file with ``[[sources]]`` and ``[serve]``), each
  running the usual multi-camera analysis and serving its own ``/healthz`` and ``/metrics`` on
  the node Ray put it on; Prometheus scrapes them all.

Inputs must be readable from every node (a shared file system, or URLs); the classifier too (a
hub id, or a folder present on every node).

>>> run_batch(load_config(), ["talks/"], "out", ray="auto")            # doctest: +SKIP
>>> run_batch(load_config(), ["talks/"], "out", ray="10.0.0.2:6379")    # doctest: +SKIP

``--ray auto`` starts a Ray of this machine's own (on the loopback address) unless ``RAY_ADDRESS``
names a cluster: it never joins whatever cluster the address file in Ray's shared temporary folder
names (anyone on the machine can write that). A cluster that does not answer within
:data:`JOIN_TIMEOUT_S` seconds (``$FER_STREAM_RAY_TIMEOUT`` to change it) is one error line.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fer_stream.analysis.archive import OUTPUTS, Job, VideoProgress, analyse_video, prepare_folder
from fer_stream.analysis.run import analyse
from fer_stream.analysis.signals import StopOnSignal
from fer_stream.build import make_detector
from fer_stream.config import Config
from fer_stream.errors import ConfigError, first_line
from fer_stream.io.sinks import write_atomic

if TYPE_CHECKING:  # torch loads in the functions that run it
    from fer_stream.frames import Prediction
    from fer_stream.io.images import ImageLike
    from fer_stream.model.contract import Classifier, PixelValues
    from fer_stream.model.head import ClassifierHead

log = logging.getLogger("fer_stream")


JOIN_TIMEOUT_S = 30.0  # longest wait for a cluster to answer, unless $FER_STREAM_RAY_TIMEOUT says otherwise


def join_timeout() -> float:
    """Seconds to wait for a cluster to answer: ``$FER_STREAM_RAY_TIMEOUT``, else :data:`JOIN_TIMEOUT_S`."""
    text = os.environ.get("FER_STREAM_RAY_TIMEOUT", "").strip()
    if not text:
        return JOIN_TIMEOUT_S
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 3600:
        raise ConfigError(f"FER_STREAM_RAY_TIMEOUT must be a number of seconds from 0 to 3600, not {text!r}")
    return seconds


def init_options(address: str) -> dict[str, Any]:
    """``ray.init`` arguments for ``--ray ADDRESS``: ``auto`` is ``RAY_ADDRESS`` if set, else a new
    Ray of this machine's own on the loopback address; a cluster on a loopback address is joined from
    that address (not the machine's interface address, which Ray would look for and never find).

    >>> init_options("127.0.0.1:6379")["_node_ip_address"]
    '127.0.0.1'
    """
    if address == "auto":
        address = os.environ.get("RAY_ADDRESS", "").strip() or "local"
    options: dict[str, Any] = {"address": address, "logging_level": logging.ERROR, "log_to_driver": False}
    if address == "local":
        options.update(include_dashboard=False, _node_ip_address="127.0.0.1")
    elif "://" not in address:
        ip = _loopback_ip(address)
        if ip is not None:
            options["_node_ip_address"] = ip
    return options


def _loopback_ip(address: str) -> str | None:
    """The IP of ``HOST:PORT``'s host if it is a loopback address, else None."""
    host = address.rpartition(":")[0].strip("[]") if ":" in address else address
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        try:
            ip = ipaddress.ip_address(socket.gethostbyname(host))
        except (OSError, ValueError, UnicodeError):
            return None
    return str(ip) if ip.is_loopback else None


def _keep_loopback(ray: Any) -> None:
    """Make Ray keep loopback addresses in this process (and the Ray it starts): it replaces
    127.0.0.1 by the machine's interface address, where a cluster bound to the loopback is never
    found (and where a Ray of our own would be reachable from the network). This is the switch Ray
    itself uses for single-machine Rays on macOS and Windows."""
    import ray._private.ray_constants as ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # read by the processes Ray starts
    if hasattr(ray_constants, "ENABLE_RAY_CLUSTER"):
        ray_constants.ENABLE_RAY_CLUSTER = False


def connect(address: str, *, timeout: float | None = None) -> Any:
    """The ``ray`` module, connected as :func:`init_options` says (an already initialised Ray is used
    as it is). A cluster that refuses, or does not answer within ``timeout`` seconds (default:
    :func:`join_timeout`), is one ConfigError, before Ray is asked to join it (Ray itself retries
    for minutes)."""
    timeout = join_timeout() if timeout is None else timeout
    try:
        import ray
    except ImportError:
        raise ConfigError("--ray needs Ray: pip install 'fer-stream[ray]'") from None
    if ray.is_initialized():
        return ray
    options = init_options(address)
    target = options["address"]
    where = "a local Ray" if target == "local" else f"the Ray cluster at '{target}'"
    if target != "local":
        problem = probe(target, timeout)
        if problem is not None:
            raise ConfigError(f"{where} {problem}; check the address (`ray status` on its head node) or leave --ray out")
    if "_node_ip_address" in options:
        _keep_loopback(ray)
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Ray's own warnings about ports: the error line below says it
            ray.init(**options)
    except Exception as e:  # Ray raises several types for an unreachable or refused cluster
        raise ConfigError(
            f"cannot start or join {where}: {first_line(e)}; start one with `ray start --head` or give --ray HOST:PORT"
        ) from None
    return ray


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # and an empty SETTINGS frame


def probe(address: str, timeout: float) -> str | None:
    """Whether a Ray cluster (its GCS, or a Ray Client server: both gRPC) answers at ``address``
    within ``timeout`` seconds; None if it does, else what went wrong, for an error line.

    An HTTP/2 server answers a client's preface with a SETTINGS frame at once: that is all asked.
    """
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        return "is not HOST:PORT"
    deadline = time.monotonic() + timeout
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout) as conn:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return None  # TLS first: Ray's own handshake tells
            conn.settimeout(max(0.1, deadline - time.monotonic()))
            conn.sendall(_HTTP2_PREFACE)
            head = conn.recv(9)  # the header of the server's first frame
    except TimeoutError:
        return f"did not answer in {timeout:g} s"
    except OSError as e:
        return f"cannot be reached ({e.strerror or type(e).__name__})"
    if len(head) < 9 or head[3] != 0x04:
        return "answered, but not as a Ray cluster does (no gRPC)"
    return None


def _accelerator(cfg: Config, resources: dict[str, float]) -> dict[str, Any] | None:
    """Ray options giving a classifier the node's accelerator the settings ask for; None: unusable node."""
    device = cfg.classifier.device
    if device in ("auto", "cuda") and resources.get("GPU", 0) >= 1:
        return {"num_gpus": 1}
    if device in ("auto", "npu") and resources.get("NPU", 0) >= 1:
        return {"resources": {"NPU": 1}}
    if device in ("auto", "cpu", "mps"):
        return {}
    return None


# -- classifier actors ---------------------------------------------------------------------------


class ClassifierActor:
    """One classifier on one node, batching the faces of every video task that calls it."""

    def __init__(self, cfg: Config) -> None:
        from fer_stream.build import make_classifier
        from fer_stream.model.service import ClassifierService

        self.clf = make_classifier(cfg)
        if cfg.classifier.warmup:
            self.clf.warmup()
        self.service = ClassifierService(self.clf).__enter__()

    def describe(self) -> dict[str, Any]:
        import ray

        c = self.clf
        return {
            "node": ray.get_runtime_context().get_node_id(),
            "max_batch": c.max_batch,
            "device": str(c.device),
            "precision": c.precision,
            "head": c.head,  # labels, threshold and processor: the task pre- and postprocesses as the model would
        }

    def forward(self, pixels: np.ndarray, owner: int) -> np.ndarray:
        if self.clf.head.array_preprocessor is not None:  # ONNX Runtime's numpy path
            return self.service.submit(pixels, owner)
        import torch

        return self.service.submit(torch.from_numpy(pixels), owner)

    def stats(self) -> dict[str, Any]:
        s = self.service
        return {"batches": dict(s.batch_sizes), "mixed_batches": s.mixed_batches, "busy_s": round(s.busy_s, 3)}


class RemoteClassifier:
    """The :class:`~fer_stream.model.contract.Classifier` of a task: pre- and postprocessing here, with
    the model's :class:`~fer_stream.model.head.ClassifierHead`; the forward pass on a :class:`ClassifierActor`."""

    def __init__(self, actor: Any, owner: int) -> None:
        import ray

        info = ray.get(actor.describe.remote())
        self.node: str = info["node"]  # where the forward passes run
        self._actor, self._owner = actor, owner
        self.head: ClassifierHead = info["head"]
        self.max_batch: int = info["max_batch"]
        self.device: str = info["device"]
        self.precision: str = info["precision"]

    @property
    def labels(self) -> tuple[str, ...]:
        return self.head.labels

    def preprocess(self, images: Sequence[ImageLike]) -> PixelValues:
        return self.head.preprocess(images)

    def forward(self, pixel_values: PixelValues) -> np.ndarray:
        import ray

        probs: np.ndarray = ray.get(self._actor.forward.remote(np.asarray(pixel_values), self._owner))
        return probs

    def postprocess(self, probs: np.ndarray) -> list[Prediction]:
        return self.head.postprocess(probs)

    def warmup(self) -> None:  # the actor warmed its model up when it started
        pass


if TYPE_CHECKING:  # the task's stand-in is a whole classifier
    _implements: type[Classifier] = RemoteClassifier


class ProgressBoard:
    """The frame counts of running video tasks (a Ray actor), read by the driver for its bars."""

    def __init__(self) -> None:
        self.counts: dict[str, tuple[int, int | None]] = {}

    def report(self, key: str, done: int, total: int | None) -> None:
        self.counts[key] = (done, total)

    def snapshot(self) -> dict[str, tuple[int, int | None]]:
        return dict(self.counts)


class _FrameReporter:
    """A task's stand-in for a progress bar: counts frames and tells the board at most twice a second."""

    def __init__(self, board: Any, key: str) -> None:
        self._board, self._key = board, key
        self.n = 0
        self.total: int | None = None
        self._sent = 0.0

    def reset(self, total: int | None = None) -> None:
        self.n, self.total = 0, total
        self._send()

    def update(self, n: int = 1) -> None:
        self.n += n
        if time.monotonic() - self._sent >= 0.5:
            self._send()

    def set_postfix(self, *args: Any, **kwargs: Any) -> None:
        pass

    def _send(self) -> None:
        self._sent = time.monotonic()
        self._board.report.remote(self._key, self.n, self.total)  # not waited on


def _video_task(cfg: Config, job: Job, video: bool, actors: dict[str, Any], board: Any = None) -> dict[str, Any]:
    """One video on whichever node Ray chose: its record and its output files' bytes."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    actor = actors.get(node) or list(actors.values())[int(job.key, 16) % len(actors)]
    client = RemoteClassifier(actor, owner=int(job.key[:8], 16))
    bar = _FrameReporter(board, job.key) if board is not None else None
    with tempfile.TemporaryDirectory(prefix="fer-stream-") as tmp:
        folder = Path(tmp) / job.name
        with make_detector(cfg) as detector:
            # A StopOnSignal never entered: no signal handlers in a Ray worker; the driver cancels instead.
            record = analyse_video(cfg, job, folder, video=video, classifier=client, detector=detector, stopper=StopOnSignal(), bar=bar)
        files = {name: (folder / name).read_bytes() for name in OUTPUTS.values() if (folder / name).is_file()}
    return {"record": {**record, "node": node[:12], "classifier_node": client.node[:12]}, "files": files, "tmp": str(folder)}


def run_on_ray(cfg: Config, todo: list[Job], out_dir: Path, address: str, *, video: bool, progress: VideoProgress) -> None:
    """Every job as a Ray task; outputs and manifest records (through ``progress``) written here, as each finishes."""
    ray = connect(address)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    actor_cls = ray.remote(ClassifierActor)
    actors: dict[str, Any] = {}
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        options = _accelerator(cfg, node.get("Resources", {}))
        if options is None:
            continue
        actors[node["NodeID"]] = actor_cls.options(
            num_cpus=0,  # it computes while its node's video tasks wait for it
            max_concurrency=64,
            max_restarts=3,
            max_task_retries=3,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False),  # soft: a 0-CPU actor lands on the head
            **options,
        ).remote(cfg)
    if not actors:
        raise ConfigError(
            f"no node of the Ray cluster offers the device '{cfg.classifier.device}' (GPU for cuda, custom resource NPU for npu)"
        )
    board = ray.remote(ProgressBoard).options(num_cpus=0).remote()
    ray.get([a.describe.remote() for a in actors.values()])  # loaded everywhere before videos start
    task = ray.remote(_video_task).options(num_cpus=1, max_retries=3, retry_exceptions=False, scheduling_strategy="SPREAD")
    running = {task.remote(cfg, job, video, actors, board): job for job in todo}
    by_key = {job.key: job for job in todo}
    try:
        while running:
            done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for ref in done:
                job = running.pop(ref)
                by_key.pop(job.key, None)
                try:
                    result = ray.get(ref)
                except Exception as e:  # the task itself failed (after Ray's retries of lost workers)
                    rec = job.failed(f"{type(e).__name__}: {first_line(e, last=True)}")
                else:
                    problem = _write_files(out_dir / job.name, result["files"], result["tmp"])
                    rec = job.failed(problem) if problem else result["record"]
                progress.finished(job, rec)
            _show_frames(ray, board, by_key, progress)
    except KeyboardInterrupt:
        for ref in running:
            ray.cancel(ref, force=True)
        raise
    finally:
        ray.kill(board)
        for name, actor in actors.items():
            try:
                log.info("classifier on node %s: %s", name[:12], ray.get(actor.stats.remote(), timeout=5))
            except Exception:  # an actor lost with its node: nothing to report
                pass
            ray.kill(actor)


def _show_frames(ray: Any, board: Any, running: dict[str, Job], progress: VideoProgress) -> None:
    """The running tasks' frame counts into their bars (a board that does not answer: next time)."""
    try:
        counts = ray.get(board.snapshot.remote(), timeout=10)
    except Exception:
        return
    for key, (done, total) in counts.items():
        if key in running:
            progress.frames(running[key], done, total)


def _write_files(folder: Path, files: dict[str, bytes], worker_folder: str) -> str | None:
    """A video's outputs from a task, each written whole then renamed; paths inside name this folder.
    Returns why nothing was written (the folder is a link planted there, say), else None."""
    problem = prepare_folder(folder)
    if problem is not None:
        return problem
    for name, data in files.items():
        if name in (OUTPUTS["summary"], OUTPUTS["report"]):  # they name the outputs: where they are now
            data = data.replace(worker_folder.encode(), str(folder).encode())
        write_atomic(folder / name, data)  # a killed run's partial is kept aside, never written through
    return None


# -- camera groups -------------------------------------------------------------------------------


class CameraGroup:
    """One config's cameras, analysed by one process (a Ray actor) that serves its own /metrics."""

    def __init__(self, cfg: Config, name: str) -> None:
        self.cfg, self.name = cfg, name
        self.stopper = StopOnSignal()  # not entered: ``stop`` stands in for signals

    def where(self) -> str:
        import ray

        host, port = self.cfg.serve.address.rpartition(":")[::2]
        if host in ("", "0.0.0.0", "::"):
            host = ray.util.get_node_ip_address()
        return f"http://{host}:{port}"

    def run(self) -> dict[str, Any]:
        """Analyse the group's cameras until they end or ``stop``; returns the summary (as its file has it)."""
        outcome = analyse(self.cfg, stopper=self.stopper)
        errors = [f"{sid}: {e}" for sid, e in outcome.errors]
        return {"group": self.name, "summary": outcome.summary.as_dict(), "errors": errors}

    def stop(self) -> None:
        self.stopper.stop()  # as SIGTERM would: outputs are finalized


def start_groups(cfgs: dict[str, Config], address: str) -> dict[str, Any]:
    """A :class:`CameraGroup` actor per config, placed by Ray (accelerator resources as for batch)."""
    ray = connect(address)
    group_cls = ray.remote(CameraGroup)
    cluster = ray.cluster_resources()
    actors = {}
    for name, cfg in cfgs.items():
        if not cfg.serve.address:
            raise ConfigError(f"camera group '{name}' needs [serve] address (e.g. \"0.0.0.0:9108\") so Prometheus can scrape it")
        options = _accelerator(cfg, cluster) or {}
        actors[name] = group_cls.options(num_cpus=1, max_concurrency=4, name=f"fer-stream-{name}", **options).remote(cfg, name)
    return actors
