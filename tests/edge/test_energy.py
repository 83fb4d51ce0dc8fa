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


def measure_sleep(seconds=0.4, idle_seconds=0.0, **meter_args):
    """(meter, elapsed seconds) for a sleep under an EnergyMeter."""
    with EnergyMeter(idle_seconds=idle_seconds, **meter_args) as m:
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
    with EnergyMeter(root=str(tmp_path), idle_seconds=0) as m:
        write(zone / "energy_uj", 400_000)  # wrapped: 100k to the top, then 400k
    assert m.source == "rapl" and not m.estimate
    assert m.joules == pytest.approx(0.5)


def test_hwmon_energy_counter(tmp_path, no_vcgencmd):
    f = tmp_path / "sys/class/hwmon/hwmon3/energy1_input"
    write(f, 1_000_000)
    with EnergyMeter(root=str(tmp_path), idle_seconds=0) as m:
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


def test_rapl_reads_the_packages_not_psys_on_top(tmp_path, no_vcgencmd):
    zones = {"intel-rapl:0": ("package-0", 1_000_000), "intel-rapl:1": ("psys", 3_000_000)}
    for zone, (name, _) in zones.items():
        write(tmp_path / "sys/class/powercap" / zone / "name", name)
        write(tmp_path / "sys/class/powercap" / zone / "energy_uj", 0)
    with EnergyMeter(root=str(tmp_path), idle_seconds=0) as m:
        for zone, (_, uj) in zones.items():
            write(tmp_path / "sys/class/powercap" / zone / "energy_uj", uj)
    assert (m.source, m.joules) == ("rapl", pytest.approx(1.0))  # psys contains the package: not added


def test_hwmon_counts_the_socket_once_not_its_cores_as_well(tmp_path, no_vcgencmd):
    d = tmp_path / "sys/class/hwmon/hwmon2"  # as amd_energy lays it out
    for i, label in enumerate(("Ecore000", "Ecore001", "Esocket0"), 1):
        write(d / f"energy{i}_label", label)
        write(d / f"energy{i}_input", 0)
    with EnergyMeter(root=str(tmp_path), idle_seconds=0) as m:
        write(d / "energy1_input", 700_000)
        write(d / "energy2_input", 800_000)
        write(d / "energy3_input", 2_000_000)
    assert (m.source, m.joules) == ("hwmon-energy", pytest.approx(2.0))


def test_several_unlabelled_power_inputs_are_not_added_up(tmp_path, no_vcgencmd):
    write(tmp_path / "sys/class/hwmon/hwmon0/power1_input", 2_000_000)
    write(tmp_path / "sys/class/hwmon/hwmon1/power1_input", 1_000_000)
    assert find_sensor(str(tmp_path)) is None  # they may overlap: no figure rather than a wrong one


def test_idle_power_is_measured_first_and_reported_beside_the_total(tmp_path, no_vcgencmd):
    write(tmp_path / "sys/class/hwmon/hwmon0/power1_input", 2_000_000)  # 2 W, busy or not
    m, elapsed = measure_sleep(0.4, idle_seconds=0.3, root=str(tmp_path))
    assert m.idle_watts == pytest.approx(2.0, rel=0.2)
    assert m.joules == pytest.approx(2.0 * elapsed, rel=0.3)
    assert m.joules_above_idle == pytest.approx(0.0, abs=0.25 * m.joules)
    with EnergyMeter(active_watts=10.0, root=str(tmp_path / "none")) as e:
        pass
    assert e.idle_watts is None and e.joules_above_idle is None  # an estimate has no idle figure
