"""Energy of a piece of work, from a real sensor when the device has one.

Exactly one package- or board-level source is read, never several that
overlap (a per-core counter is part of its package's):
- `rapl`: Linux RAPL package zones, /sys/class/powercap/intel-rapl:N/energy_uj
  whose `name` is package-N (cumulative microjoules; wrap-around handled
  with max_energy_range_uj). A `psys` zone, which contains the packages, is
  not added to them.
- `hwmon-energy`: /sys/class/hwmon/hwmon*/energy*_input (cumulative
  microjoules), the inputs labelled socket / package (`energy*_label`),
  or the only input there is. Per-core inputs are never added.
- `hwmon-power`: the same choice among power*_input (microwatts), sampled
  in a thread while the work runs and integrated over time.
- `pmic`: the Raspberry Pi 5 PMIC, `vcgencmd pmic_read_adc` (rail currents
  and voltages), sampled and integrated the same way. The PMIC's rails are
  not the board: the 5 V loads (USB, HATs, fan) and the conversion losses
  are left out, so it under-reads what the board draws (`SCOPES` says so in
  every result; a published linear fit puts the board at about
  1.145 x PMIC + 0.59 W).
- `estimate`: only when the user gives `--active-watts`: that power times the
  process's CPU time. Labelled as an estimate.
Otherwise there is no energy figure. With a sensor, the idle power is
measured first for `idle_seconds` (nothing running), and both the total
energy and the energy above idle are reported (Tang & Lin subtract idle).
These are whole-package or whole-board readings: other work on the device
counts too, so measure on a quiet device.
"""
import glob
import os
import re
import shutil
import subprocess
import threading
import time

SAMPLE_SECONDS = 0.05

# What each source measures, and what it leaves out: recorded beside every energy figure.
SCOPES = {
    "rapl": "the CPU package(s) (RAPL package zones); leaves out memory, disks and the rest of the board",
    "hwmon-energy": "the hwmon input labelled as the package or socket (or the only one)",
    "hwmon-power": "the hwmon input labelled as the package or socket (or the only one), sampled",
    "pmic": "the sum of the Raspberry Pi 5 PMIC's rails (SoC core, DDR, 0.8-3.7 V system rails, Wi-Fi, HDMI); "
            "leaves out the 5 V loads (USB, HATs, fan) and conversion losses, so it under-reads the board "
            "(a published linear fit: board W ~ 1.145 x PMIC W + 0.59 W)",
    "estimate": "not measured: --active-watts times the process's CPU time",
}


def _read_int(path):
    try:
        with open(path) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


class _Counter:
    """Cumulative counters (microjoules) read before and after."""

    def __init__(self, source, paths, ranges=None):
        self.source, self.paths, self.ranges = source, paths, ranges or [None] * len(paths)

    def start(self):
        self.before = [_read_int(p) for p in self.paths]

    def stop(self):
        total = 0
        for before, path, rng in zip(self.before, self.paths, self.ranges):
            after = _read_int(path)
            delta = after - before
            if delta < 0 and rng:
                delta += rng  # the counter wrapped
            total += delta
        return total / 1e6


class _Sampler:
    """Instantaneous power (watts) sampled in a thread, integrated (trapezoid)."""

    def __init__(self, source, read_watts):
        self.source, self.read_watts = source, read_watts

    def _run(self):
        last_t, last_w = time.perf_counter(), self.read_watts()
        stopped = False
        while not stopped:  # a last sample after the stop, so work shorter than one period counts too
            stopped = self._stop.wait(SAMPLE_SECONDS)
            t, w = time.perf_counter(), self.read_watts()
            self.joules += 0.5 * (w + last_w) * (t - last_t)
            last_t, last_w = t, w

    def start(self):
        self.joules, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.joules


def _read_text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _rapl(root):
    zones = sorted(glob.glob(os.path.join(root, "sys/class/powercap/intel-rapl:[0-9]")))
    zones = [z for z in zones if _read_int(os.path.join(z, "energy_uj")) is not None]  # needs privileges
    packages = [z for z in zones if _read_text(os.path.join(z, "name")).startswith("package")]
    zones = packages or zones[:1]  # unnamed zones: the first only, which is package 0
    if not zones:
        return None
    paths = [os.path.join(z, "energy_uj") for z in zones]
    ranges = [_read_int(os.path.join(z, "max_energy_range_uj")) for z in zones]
    return _Counter("rapl", paths, ranges)


PACKAGE_LABEL = re.compile(r"socket|package|pkg|ppt|\bsoc\b", re.IGNORECASE)


def package_inputs(root, kind):
    """The hwmon `kind` (energy, power) inputs that together read the package
    or board once: those labelled as a socket or package, else the only one."""
    paths = sorted(glob.glob(os.path.join(root, f"sys/class/hwmon/hwmon*/{kind}*_input")))
    paths = [p for p in paths if _read_int(p) is not None]
    labelled = [p for p in paths if PACKAGE_LABEL.search(_read_text(p[:-len("_input")] + "_label"))]
    if labelled:
        return labelled
    return paths if len(paths) == 1 else []  # several unlabelled inputs may overlap: none is trusted


def _hwmon(root):
    energy = package_inputs(root, "energy")
    if energy:
        return _Counter("hwmon-energy", energy)
    power = package_inputs(root, "power")
    if power:
        return _Sampler("hwmon-power", lambda: sum((_read_int(p) or 0) for p in power) / 1e6)
    return None


_PMIC_RE = re.compile(r"^\s*(\S+)_([AV])\s+\w+\(\d+\)=([0-9.eE+-]+)[AV]\s*$")


def parse_pmic(text):
    """Watts from `vcgencmd pmic_read_adc` output: the sum of current x voltage
    over the rails that report both (EXT5V and BATT report a voltage only)."""
    amps, volts = {}, {}
    for line in text.splitlines():
        m = _PMIC_RE.match(line)
        if m:
            (amps if m.group(2) == "A" else volts)[m.group(1)] = float(m.group(3))
    return sum(a * volts[rail] for rail, a in amps.items() if rail in volts)


def _pmic():
    exe = shutil.which("vcgencmd")
    if not exe:
        return None

    def read():
        out = subprocess.run([exe, "pmic_read_adc"], capture_output=True, text=True, timeout=5)
        return parse_pmic(out.stdout)
    try:
        if read() <= 0:
            return None
    except (OSError, subprocess.SubprocessError):
        return None
    return _Sampler("pmic", read)


def find_sensor(root="/"):
    """The best energy source on this device, or None."""
    return _rapl(root) or _hwmon(root) or _pmic()


IDLE_SECONDS = 1.0


class EnergyMeter:
    """with EnergyMeter(...) as m: work()  ->  m.joules, m.source, m.estimate,
    and with a sensor m.idle_watts and m.joules_above_idle (idle measured
    for `idle_seconds` on entering, before the work starts)."""

    def __init__(self, active_watts=None, root="/", idle_seconds=IDLE_SECONDS):
        self.sensor = find_sensor(root)
        self.active_watts, self.idle_seconds = active_watts, idle_seconds
        self.joules, self.source, self.estimate = None, None, False
        self.idle_watts, self.joules_above_idle = None, None

    def __enter__(self):
        if self.sensor and self.idle_seconds > 0:
            self.sensor.start()
            t0 = time.perf_counter()
            time.sleep(self.idle_seconds)
            self.idle_watts = self.sensor.stop() / (time.perf_counter() - t0)
        if self.sensor:
            self.sensor.start()
        self._cpu0, self._t0 = time.process_time(), time.perf_counter()
        return self

    def __exit__(self, *exc):
        cpu, seconds = time.process_time() - self._cpu0, time.perf_counter() - self._t0
        if self.sensor:
            self.joules, self.source = self.sensor.stop(), self.sensor.source
            if self.idle_watts is not None:
                self.joules_above_idle = self.joules - self.idle_watts * seconds
        elif self.active_watts is not None:
            self.joules, self.source, self.estimate = self.active_watts * cpu, "estimate", True
        return False
