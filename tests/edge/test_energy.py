import os
import stat
import time

import pytest

from edge_runtime.energy import EnergyMeter, find_sensor, parse_pmic

PMIC_OUTPUT = """\
     VDD_CORE_A current(1)=2.00000000A
     3V3_SYS_A current(2)=0.50000000A
     VDD_CORE_V volt(9)=0.80000000V
     3V3_SYS_V volt(10)=3.30000000V
     EXT5V_V volt(24)=5.10000000V
"""


def write(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(f"{value}\n")


def measure_sleep(seconds=0.4, **meter_args):
    """(meter, elapsed seconds) for a sleep under an EnergyMeter."""
    with EnergyMeter(**meter_args) as m:
        t0 = time.perf_counter()
        time.sleep(seconds)
        elapsed = time.perf_counter() - t0
    return m, elapsed


@pytest.fixture
def no_vcgencmd(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "emptybin"))


def test_rapl_counter_with_wraparound(tmp_path, no_vcgencmd):
    zone = tmp_path / "sys/class/powercap/intel-rapl:0"
    write(zone / "energy_uj", 900_000)
    write(zone / "max_energy_range_uj", 1_000_000)
    write(tmp_path / "sys/class/powercap/intel-rapl:0:0/energy_uj", 5)  # a subzone: not counted
    with EnergyMeter(root=str(tmp_path)) as m:
        write(zone / "energy_uj", 400_000)  # wrapped: 100k to the top, then 400k
    assert m.source == "rapl" and not m.estimate
    assert m.joules == pytest.approx(0.5)


def test_hwmon_energy_counter(tmp_path, no_vcgencmd):
    f = tmp_path / "sys/class/hwmon/hwmon3/energy1_input"
    write(f, 1_000_000)
    with EnergyMeter(root=str(tmp_path)) as m:
        write(f, 3_500_000)
    assert (m.source, m.joules) == ("hwmon-energy", pytest.approx(2.5))


def test_hwmon_power_is_integrated_over_time(tmp_path, no_vcgencmd):
    write(tmp_path / "sys/class/hwmon/hwmon0/power1_input", 2_000_000)  # 2 W
    m, elapsed = measure_sleep(root=str(tmp_path))
    assert m.source == "hwmon-power"
    assert m.joules == pytest.approx(2.0 * elapsed, rel=0.3)


def test_parse_pmic_sums_rails():
    assert parse_pmic(PMIC_OUTPUT) == pytest.approx(2.0 * 0.8 + 0.5 * 3.3)


def test_pmic_through_a_fake_vcgencmd(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "vcgencmd"
    exe.write_text("#!/bin/sh\n/bin/cat <<'EOF'\n" + PMIC_OUTPUT + "EOF\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bindir))
    m, elapsed = measure_sleep(root=str(tmp_path))
    assert m.source == "pmic"
    assert m.joules == pytest.approx(3.25 * elapsed, rel=0.3)


def test_estimate_only_when_asked(tmp_path, no_vcgencmd):
    assert find_sensor(str(tmp_path)) is None
    with EnergyMeter(root=str(tmp_path)) as m:
        sum(i * i for i in range(200_000))
    assert m.joules is None and m.source is None
    with EnergyMeter(active_watts=10.0, root=str(tmp_path)) as m:
        c0 = time.process_time()
        sum(i * i for i in range(200_000))
        cpu = time.process_time() - c0
    assert m.source == "estimate" and m.estimate
    assert m.joules == pytest.approx(10.0 * cpu, rel=0.5, abs=0.05)
