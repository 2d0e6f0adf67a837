"""What this machine can do for split-inference measurements: netem's network probes plus the ML side
(TensorFlow/Keras, CPUs, ImageNet weights, RAPL energy counters, GPU).

These answers decide how results must be labelled (random vs ImageNet weights, energy measured or not, how many
cores timed the inference), so `splitbed doctor` says what each one means, not only whether it is there.
TensorFlow is imported only inside the probes that need it.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from netem import doctor as netem_doctor
from netem.doctor import Probe
from netem.hostload import STEAL_LIMIT, HostCpuCounters, read_counters
from splitbed.host import cgroup

RAPL_ENERGY_FILE = Path("/sys/class/powercap/intel-rapl:0/energy_uj")


def probe_tensorflow() -> Probe:
    name = "tensorflow"
    fix = "bash scripts/setup.sh (installs tensorflow-cpu with Keras 3 into .venv)"
    from splitbed.models import tfboot

    started = time.perf_counter()
    try:
        keras = tfboot.keras()
        tf = tfboot.tensorflow()
    except Exception as exc:  # a broken install can raise anything at import
        return Probe(name, False, True, f"import failed: {type(exc).__name__}: {exc}", fix=fix,
                     meaning="no models: nothing can be measured")
    took = time.perf_counter() - started
    detail = f"TensorFlow {tf.__version__}, Keras {keras.__version__} (import {took:.1f} s)"
    if int(keras.__version__.split(".")[0]) < 3:
        return Probe(name, False, True, detail + ": Keras 3 is required", fix=fix,
                     meaning="graph splitting is written for Keras 3")
    return Probe(name, True, True, detail, meaning="versions are recorded in every metrics record")


def probe_environment_lock() -> Probe:
    """The installed versions against constraints.txt: a drifted venv makes figures that a fresh `make setup`
    (the locked versions) may not reproduce."""
    from splitbed import envlock

    name = "environment_lock"
    path = envlock.lock_path()
    if path is None:
        return Probe(name, False, False, f"no {envlock.LOCK_NAME} next to this splitbed (not a source checkout)",
                     meaning="records cannot say whether the software is the locked one (lock_match: unknown)")
    try:
        lock = envlock.read_lock(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        return Probe(name, False, False, f"unreadable lock: {exc}", fix="git checkout constraints.txt, then make setup",
                     meaning="records cannot say whether the software is the locked one")
    drift = envlock.compare(lock, envlock.installed())
    where = f"{path} (sha256 {lock.sha256[:12]}, {len(lock.pins)} pins)"
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    other_python = f"; the lock was resolved for Python {lock.python}, this is {here}" \
        if lock.python and lock.python != here else ""
    if drift.matches:
        return Probe(name, True, False, f"every installed version matches {where}{other_python}",
                     meaning="records say lock_match: yes (the locked, reproducible environment)")
    return Probe(name, False, False, f"installed versions drift from {where}: {drift.describe()}{other_python}",
                 fix=envlock.fix(drift),
                 meaning="records say lock_match: no; a fresh checkout may not reproduce these figures")


def probe_cpus() -> Probe:
    """Inference times depend on how many cores the process may use and how busy they are right now."""
    usable = len(os.sched_getaffinity(0))
    limit = cgroup.cpu_limit_cores()
    load1, _, _ = os.getloadavg()
    detail = f"{os.cpu_count()} CPUs, {usable} usable by this process"
    if limit is not None:
        detail += f", cgroup limit {limit:g} CPUs"
    detail += f", load average {load1:.2f}"
    busy = " (busy now: timings will be slower and noisier)" if load1 > usable else ""
    stolen = read_counters().since(HostCpuCounters(0, 0, 0)).stolen_share
    if stolen is not None:
        detail += f", {stolen:.1%} of the CPU stolen by the hypervisor since boot"
        if stolen > STEAL_LIMIT:
            busy += (f" (a hypervisor that takes over {STEAL_LIMIT:.0%} stalls the link and both nodes: records "
                     "carry the steal per window and the sweep names the points it touched)")
    return Probe("cpus", True, False, detail,
                 meaning=f"inference times are measured on {usable} cores{busy}")


def probe_imagenet_weights() -> Probe:
    """Asks the same questions as `weights="auto"` (splitbed.models.weights), so the doctor and a run agree."""
    from splitbed.models import registry
    from splitbed.models.weights import KERAS_WEIGHTS_HOST, OFFLINE_ENV, keras_cache_file, network_reachable

    name = "imagenet_weights"
    files = {model: registry.get(model).imagenet_weights_file for model in registry.names()}
    cached = {model: path for model, file in files.items() if (path := keras_cache_file(file)) is not None}
    if len(cached) == len(files):
        return Probe(name, True, False, "cached: " + ", ".join(f"{m} ({p})" for m, p in cached.items()),
                     meaning="predictions are real ImageNet classifications")
    missing = [m for m in files if m not in cached]
    cached_text = f"cached: {', '.join(cached)}; " if cached else "none cached; "
    if network_reachable():
        return Probe(name, True, False, f"{cached_text}{', '.join(missing)} downloadable from {KERAS_WEIGHTS_HOST}",
                     meaning="Keras downloads the weights on first use (VGG16: 553 MB)")
    offline = os.environ.get(OFFLINE_ENV, "") not in ("", "0")
    why = f"{OFFLINE_ENV} is set" if offline else f"{KERAS_WEIGHTS_HOST}:443 not reachable"
    return Probe(
        name, False, False, f"{cached_text}{why}",
        fix="copy the Keras weight files (" + ", ".join(files[m] for m in missing) + ") into ~/.keras/models/",
        meaning="weights=auto uses seeded random weights (every record says so): sizes and times are valid, "
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
    from splitbed.models import tfboot

    try:
        tf = tfboot.tensorflow()
        gpus = tf.config.list_physical_devices("GPU")
    except Exception as exc:
        return Probe("gpu", False, False, f"not probed: {type(exc).__name__}: {exc}", meaning="CPU inference")
    if not gpus:
        return Probe("gpu", False, False, "no GPU visible to TensorFlow",
                     meaning="inference runs on the CPU")
    return Probe("gpu", True, False, ", ".join(g.name for g in gpus), meaning="TensorFlow may run inference on the GPU")


PROBES: dict[str, Callable[[], Probe]] = {
    "tensorflow": probe_tensorflow,
    "environment_lock": probe_environment_lock,
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
