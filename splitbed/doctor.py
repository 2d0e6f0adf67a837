"""What this machine can do for split-inference measurements: netem's network probes plus the ML side
(TensorFlow/Keras, CPUs, ImageNet weights, RAPL energy counters, GPU).

These answers decide how results must be labelled (random vs ImageNet weights, energy measured or not, how many
cores timed the inference), so `splitbed doctor` says what each one means, not only whether it is there.
TensorFlow is imported only inside the probes that need it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from netem import doctor as netem_doctor
from netem.doctor import Probe

# The seed's two models and where Keras keeps their ImageNet weights (read from Keras when it still names them).
_WEIGHT_URLS_FALLBACK = {
    "vgg16": "https://storage.googleapis.com/tensorflow/keras-applications/vgg16/"
    "vgg16_weights_tf_dim_ordering_tf_kernels.h5",
    "resnet50": "https://storage.googleapis.com/tensorflow/keras-applications/resnet/"
    "resnet50_weights_tf_dim_ordering_tf_kernels.h5",
}
REACHABILITY_TIMEOUT_S = 3.0
RAPL_ENERGY_FILE = Path("/sys/class/powercap/intel-rapl:0/energy_uj")


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def probe_tensorflow() -> Probe:
    name = "tensorflow"
    fix = "bash scripts/setup.sh (installs tensorflow-cpu with Keras 3 into .venv)"
    _quiet_tensorflow()
    started = time.perf_counter()
    try:
        import keras
        import tensorflow as tf
    except Exception as exc:  # a broken install can raise anything at import
        return Probe(name, False, True, f"import failed: {type(exc).__name__}: {exc}", fix=fix,
                     meaning="no models: nothing can be measured")
    took = time.perf_counter() - started
    detail = f"TensorFlow {tf.__version__}, Keras {keras.__version__} (import {took:.1f} s)"
    if int(keras.__version__.split(".")[0]) < 3:
        return Probe(name, False, True, detail + ": Keras 3 is required", fix=fix,
                     meaning="graph splitting is written for Keras 3")
    return Probe(name, True, True, detail, meaning="versions are recorded in every metrics record")


def _cgroup_cpu_limit() -> float | None:
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except (OSError, ValueError):
        return None
    return None if quota == "max" else int(quota) / int(period)


def probe_cpus() -> Probe:
    """Inference times depend on how many cores the process may use and how busy they are right now."""
    usable = len(os.sched_getaffinity(0))
    limit = _cgroup_cpu_limit()
    load1, _, _ = os.getloadavg()
    detail = f"{os.cpu_count()} CPUs, {usable} usable by this process"
    if limit is not None:
        detail += f", cgroup limit {limit:g} CPUs"
    detail += f", load average {load1:.2f}"
    busy = " (busy now: timings will be slower and noisier)" if load1 > usable else ""
    return Probe("cpus", True, False, detail,
                 meaning=f"inference times are measured on {usable} shared cores{busy}")


def weight_urls() -> dict[str, str]:
    """ImageNet weight URLs of the seed's models, as this Keras version names them."""
    urls = dict(_WEIGHT_URLS_FALLBACK)
    try:
        from keras.src.applications import resnet, vgg16

        urls["vgg16"] = vgg16.WEIGHTS_PATH
        urls["resnet50"] = resnet.BASE_WEIGHTS_PATH + "resnet50_weights_tf_dim_ordering_tf_kernels.h5"
    except (ImportError, AttributeError):
        pass
    return urls


def keras_cache_dirs() -> list[Path]:
    """Where keras.utils.get_file keeps downloads: $KERAS_HOME or ~/.keras, or /tmp/.keras when not writable."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return [Path(home) / "models", Path("/tmp/.keras/models")]


def cached_weights() -> dict[str, Path]:
    found = {}
    for model, url in weight_urls().items():
        for folder in keras_cache_dirs():
            path = folder / url.rsplit("/", 1)[-1]
            if path.is_file() and path.stat().st_size > 0:
                found[model] = path
                break
    return found


def reachable(url: str, timeout_s: float = REACHABILITY_TIMEOUT_S) -> tuple[bool, str]:
    """A HEAD request bounded in time (DNS included: it runs in a thread we stop waiting for)."""
    answer: list[tuple[bool, str]] = []

    def ask() -> None:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s) as r:
                answer.append((200 <= r.status < 400, f"HTTP {r.status}"))
        except (urllib.error.URLError, OSError, ValueError) as exc:
            answer.append((False, str(getattr(exc, "reason", exc))))

    worker = threading.Thread(target=ask, daemon=True)
    worker.start()
    worker.join(timeout_s + 0.5)
    return answer[0] if answer else (False, f"no answer within {timeout_s:g} s")


def probe_imagenet_weights() -> Probe:
    name = "imagenet_weights"
    _quiet_tensorflow()
    urls = weight_urls()
    cached = cached_weights()
    if len(cached) == len(urls):
        return Probe(name, True, False, "cached: " + ", ".join(f"{m} {p}" for m, p in cached.items()),
                     meaning="predictions are real ImageNet classifications")
    missing = [m for m in urls if m not in cached]
    ok, why = reachable(urls[missing[0]])
    cached_text = f"cached: {', '.join(cached)}; " if cached else "none cached; "
    if ok:
        return Probe(name, True, False, f"{cached_text}{', '.join(missing)} downloadable ({why})",
                     meaning="Keras downloads the weights on first use (VGG16: 553 MB)")
    return Probe(
        name, False, False, f"{cached_text}not obtainable: {why}",
        fix=f"copy the Keras .h5 weight files into {keras_cache_dirs()[0]} (file names as in {urls[missing[0]]})",
        meaning="models use seeded random weights (every record says so): sizes and times are valid, "
        "predictions and accuracy are not",
    )


def probe_rapl() -> Probe:
    name = "rapl"
    try:
        int(RAPL_ENERGY_FILE.read_text().strip())
    except (OSError, ValueError) as exc:
        reason = "absent" if isinstance(exc, FileNotFoundError) else f"unreadable ({exc})"
        return Probe(name, False, False, f"{RAPL_ENERGY_FILE} {reason}",
                     fix="bare-metal Intel/AMD host with the intel_rapl driver (VMs rarely expose it)",
                     meaning="no RAPL counters: energy is not measured here (estimates or null, labelled)")
    return Probe(name, True, False, f"{RAPL_ENERGY_FILE} readable",
                 meaning="energy can be read from RAPL counters")


def probe_gpu() -> Probe:
    _quiet_tensorflow()
    try:
        import tensorflow as tf

        gpus = tf.config.list_physical_devices("GPU")
    except Exception as exc:
        return Probe("gpu", False, False, f"not probed: {type(exc).__name__}: {exc}", meaning="CPU inference")
    if not gpus:
        return Probe("gpu", False, False, "no GPU visible to TensorFlow",
                     meaning="inference runs on the CPU")
    return Probe("gpu", True, False, ", ".join(g.name for g in gpus), meaning="TensorFlow may run inference on the GPU")


PROBES: dict[str, Callable[[], Probe]] = {
    "tensorflow": probe_tensorflow,
    "cpus": probe_cpus,
    "imagenet_weights": probe_imagenet_weights,
    "rapl": probe_rapl,
    "gpu": probe_gpu,
}


def probe_names() -> list[str]:
    return [*netem_doctor.PROBES, *PROBES]


def run_probe(name: str) -> Probe:
    """Run one probe by name, netem's or splitbed's (the test suite's `requires()` uses this)."""
    if name in PROBES:
        return PROBES[name]()
    if name in netem_doctor.PROBES:
        return netem_doctor.PROBES[name]()
    raise KeyError(f"unknown probe {name!r}; known: {', '.join(probe_names())}")


def probe_all() -> list[Probe]:
    return [*netem_doctor.probe_all(), *(probe() for probe in PROBES.values())]


def main(argv: Sequence[str] | None = None) -> int:
    """`splitbed doctor`: one table of netem's and splitbed's probes; returns 1 when a must-have is missing."""
    raw = list(sys.argv[1:] if argv is None else argv)
    args = netem_doctor.build_parser("splitbed doctor").parse_args(raw)
    netem_doctor.reexec_in_userns_if_needed("splitbed.doctor", raw, allow=not args.no_userns)
    return netem_doctor.report(probe_all(), args.json, "splitbed doctor")


if __name__ == "__main__":
    sys.exit(main())
