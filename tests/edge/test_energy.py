import os
import stat
import time

import pytest

from edge_runtime import bench
from edge_runtime import manifest as mf
from edge_runtime.energy import SCOPES, EnergyMeter, find_sensor, parse_pmic

# `vcgencmd pmic_read_adc` as a Raspberry Pi 5 prints it: the 12 rails that report a
# current, then their voltages, then EXT5V and BATT, which report a voltage only;
# right-aligned names, channel numbers out of order. (No Pi was at hand to capture
# from: the layout is the Pi 5's, the readings are ours, chosen to add up by hand.)
PMIC_OUTPUT = """\
 3V7_WL_SW_A current(0)=0.10000000A
   3V3_SYS_A current(1)=0.10000000A
   1V8_SYS_A current(2)=0.20000000A
  DDR_VDD2_A current(3)=0.10000000A
  DDR_VDDQ_A current(4)=0.00000000A
   1V1_SYS_A current(5)=0.20000000A
    0V8_SW_A current(6)=0.25000000A
  VDD_CORE_A current(7)=2.00000000A
   3V3_DAC_A current(17)=0.00000000A
   3V3_ADC_A current(18)=0.00000000A
   0V8_AON_A current(16)=0.00000000A
      HDMI_A current(22)=0.02000000A
 3V7_WL_SW_V volt(8)=3.70000000V
   3V3_SYS_V volt(9)=3.30000000V
   1V8_SYS_V volt(10)=1.80000000V
  DDR_VDD2_V volt(11)=1.10000000V
  DDR_VDDQ_V volt(12)=0.60000000V
   1V1_SYS_V volt(13)=1.10000000V
    0V8_SW_V volt(14)=0.80000000V
  VDD_CORE_V volt(15)=0.80000000V
   3V3_DAC_V volt(20)=3.30000000V
   3V3_ADC_V volt(21)=3.30000000V
   0V8_AON_V volt(19)=0.80000000V
      HDMI_V volt(23)=5.00000000V
     EXT5V_V volt(24)=5.10000000V
      BATT_V volt(25)=3.20000000V
"""
# by hand: WL 0.37 + 3V3 0.33 + 1V8 0.36 + DDR_VDD2 0.11 + 1V1 0.22 + 0V8_SW 0.2 + core 1.6 + HDMI 0.1
PMIC_WATTS = 0.37 + 0.33 + 0.36 + 0.11 + 0.22 + 0.2 + 1.6 + 0.1


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


def test_parse_pmic_sums_the_rails_that_report_a_current():
    assert parse_pmic(PMIC_OUTPUT) == pytest.approx(PMIC_WATTS)  # EXT5V and BATT: no current, not added
    assert parse_pmic('error=1 error_msg="Command not registered"\n') == 0  # a Pi without the chip


def fake_vcgencmd(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "vcgencmd"
    exe.write_text("#!/bin/sh\n[ \"$1\" = pmic_read_adc ] || exit 1\n/bin/cat <<'EOF'\n" + PMIC_OUTPUT + "EOF\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(bindir))


def test_pmic_through_a_fake_vcgencmd(tmp_path, monkeypatch):
    fake_vcgencmd(tmp_path, monkeypatch)
    m, elapsed = measure_sleep(root=str(tmp_path))
    assert m.source == "pmic"
    assert m.joules == pytest.approx(PMIC_WATTS * elapsed, rel=0.3)


def test_bench_says_the_pmic_leaves_out_the_5v_loads(tflite_dir, tmp_path, monkeypatch):
    fake_vcgencmd(tmp_path, monkeypatch)
    manifest = mf.load(str(tflite_dir))
    r = bench.run(mf.variant_path(manifest, "float32"), manifest["states"], steps=20, warmup=2,
                  sysfs_root=str(tmp_path), idle_seconds=0)
    assert r["energy_source"] == "pmic" and not r["energy_is_estimate"] and r["energy_mj_per_token"] > 0
    assert r["energy_scope"] == SCOPES["pmic"] and "leaves out the 5 V loads" in r["energy_scope"]


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
