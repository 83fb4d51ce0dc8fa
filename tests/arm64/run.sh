#!/usr/bin/env bash
# make test-arm64: the device runtime on the Raspberry Pi's architecture. An arm64
# Debian bookworm userland (Python 3.11, as Raspberry Pi OS bookworm) made by
# debootstrap runs under qemu-user-static through binfmt_misc; its venv holds the
# aarch64 wheels of ai-edge-litert and numpy (and pytest), installed offline.
# There: the device tests, the README's device commands from a bare copy of
# edge_runtime/ and a sweep's bundle/, and the same numbers as on x86_64.
# Emulated timings mean nothing; nothing here reports one.
#
#   bash tests/arm64/run.sh            (make test-arm64)
#   bash tests/arm64/run.sh --check    can this machine run it? one line, exit 0 or 2
#   bash tests/arm64/run.sh --numbers  only the same numbers (of ARM64_MODEL on ARM64_TEXT)
#
# Environment: ARM64_CACHE (the userland, kept between runs; default
# ~/.cache/edgelm-arm64), ARM64_CPU (the emulated core; default cortex-a76, the
# Pi 5's; cortex-a72 is the Pi 4's), ARM64_MODEL (default runs/ci-edge),
# ARM64_SWEEP (default runs/ci-sweep), ARM64_TEXT (default MODEL/sample.txt), ARM64_JSON (the same-numbers table,
# default runs/arm64/same_numbers.json), ARM64_TOKENS (default 5000).
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${ARM64_CACHE:-$HOME/.cache/edgelm-arm64}
ROOTFS=$CACHE/bookworm
CPU=${ARM64_CPU:-cortex-a76}
MODEL=${ARM64_MODEL:-runs/ci-edge}
SWEEP=${ARM64_SWEEP:-runs/ci-sweep}
JSON=${ARM64_JSON:-runs/arm64/same_numbers.json}
TOKENS=${ARM64_TOKENS:-5000}
TEXT=${ARM64_TEXT:-$MODEL/sample.txt}
MIRROR=${ARM64_MIRROR:-http://deb.debian.org/debian}
BINFMT=/proc/sys/fs/binfmt_misc

die() { echo "error: make test-arm64: $*" >&2; exit 2; }

# root, and a binfmt_misc the kernel lets us mount: what CI checks before calling this
check() {
    [ "$(id -u)" = 0 ] || die "needs root (debootstrap, chroot and binfmt_misc); run it as root"
    if ! grep -q " $BINFMT " /proc/mounts; then
        mount -t binfmt_misc binfmt_misc "$BINFMT" 2>/dev/null \
            || die "binfmt_misc cannot be mounted at $BINFMT on this machine, so aarch64 programs cannot run"
    fi
}

NUMBERS_ONLY=
case ${1:-} in
    --check) check; echo "make test-arm64 can run here (root, binfmt_misc)"; exit 0 ;;
    --numbers) NUMBERS_ONLY=1 ;;
    "") ;;
    *) die "unknown option $1 (--check, --numbers, or none)" ;;
esac
check

# Debian's debootstrap and qemu-user-static (which registers qemu-aarch64 with binfmt_misc)
if ! command -v debootstrap >/dev/null || ! command -v qemu-aarch64-static >/dev/null; then
    echo "installing debootstrap and qemu-user-static from Debian's packages"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap qemu-user-static \
        binfmt-support; } >/tmp/edgelm-arm64-apt.log 2>&1 \
        || die "cannot install debootstrap and qemu-user-static (no network to Debian's packages?); see /tmp/edgelm-arm64-apt.log"
fi
if [ ! -e "$BINFMT/qemu-aarch64" ]; then
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi
grep -q '^enabled' "$BINFMT/qemu-aarch64" 2>/dev/null \
    || die "qemu-aarch64 cannot be registered with binfmt_misc on this machine"
grep -q '^flags:.*F' "$BINFMT/qemu-aarch64" \
    || die "qemu-aarch64 is registered without the F flag, so it cannot run inside a chroot"

# The host's files: the smoke run of make test and a quick sweep of it for the bundle
[ -f "$MODEL/tflite/manifest.json" ] || die "$MODEL has no converted model (make smoke makes one; or set ARM64_MODEL)"
[ -f "$TEXT" ] || die "$TEXT is missing (make smoke writes runs/ci-edge/sample.txt; or set ARM64_TEXT)"
if [ -z "$NUMBERS_ONLY" ] && [ ! -f "$SWEEP/bundle/operating_points.json" ]; then
    echo "sweeping $MODEL into $SWEEP for a bundle"
    .venv/bin/python -m pruning.sweep "$MODEL" --out "$SWEEP" --methods units-norm --points 100,50 \
        --quantize dynamic,int8 --steps-per-epoch 20 --steps 200 --force
fi

# The userland, built once into a folder of its own and moved into place when whole
mkdir -p "$CACHE"
PARTIAL=$CACHE/bookworm.partial
cleanup() {
    for m in "$ROOTFS/proc/cpuinfo" "$ROOTFS/proc" "$ROOTFS/dev"; do mountpoint -q "$m" && umount -l "$m"; done
    rm -rf "$PARTIAL"
}
trap cleanup EXIT
if [ ! -f "$ROOTFS/.edgelm-userland" ]; then
    rm -rf "$PARTIAL" "$ROOTFS"
    echo "building the arm64 bookworm userland in $ROOTFS (debootstrap under emulation: several minutes)"
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv bookworm "$PARTIAL" "$MIRROR" \
        >"$CACHE/debootstrap.log" 2>&1 \
        || die "debootstrap failed (no network to $MIRROR?); see $CACHE/debootstrap.log"
    touch "$PARTIAL/.edgelm-userland"
    mv "$PARTIAL" "$ROOTFS"
fi
# The Pi's processors as XNNPACK's cpuinfo reads them: four cores in /sys and /proc/cpuinfo (qemu
# sets the features in HWCAP). The host's own (x86) /proc/cpuinfo makes cpuinfo crash under
# aarch64, and without the /sys lists the CompiledModel API fails to start.
case $CPU in
    cortex-a76) part=0xd0b variant=0x4 revision=1 board="Raspberry Pi 5 Model B Rev 1.0"
        features="fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp" ;;
    cortex-a72) part=0xd08 variant=0x0 revision=3 board="Raspberry Pi 4 Model B Rev 1.4"
        features="fp asimd evtstrm crc32 cpuid" ;;
    *) die "ARM64_CPU must be cortex-a76 (the Pi 5's) or cortex-a72 (the Pi 4's), not $CPU" ;;
esac
mkdir -p "$ROOTFS/sys/devices/system/cpu"
echo 0-3 >"$ROOTFS/sys/devices/system/cpu/possible"
echo 0-3 >"$ROOTFS/sys/devices/system/cpu/present"
for i in 0 1 2 3; do
    printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: %s\nCPU implementer\t: 0x41\nCPU architecture: 8\n' \
        "$i" "$features"
    printf 'CPU variant\t: %s\nCPU part\t: %s\nCPU revision\t: %s\n\n' "$variant" "$part" "$revision"
done >"$CACHE/cpuinfo"
echo "Model		: $board" >>"$CACHE/cpuinfo"
mount -t proc proc "$ROOTFS/proc"
mount --bind "$CACHE/cpuinfo" "$ROOTFS/proc/cpuinfo"
mount --bind /dev "$ROOTFS/dev"
in_pi() { chroot "$ROOTFS" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root QEMU_CPU="$CPU" "$@"; }

# The venv: the aarch64 wheels of the same releases as .venv-edge, downloaded here, installed offline there
version() { .venv-edge/bin/python -c "import importlib.metadata as m; print(m.version('$1'))"; }
WANT="ai-edge-litert==$(version ai-edge-litert) numpy==$(version numpy) pytest==$(version pytest)"
if [ "$(cat "$ROOTFS/opt/edgelm/.requirements" 2>/dev/null)" != "$WANT" ]; then
    echo "installing the aarch64 wheels: $WANT"
    rm -rf "$ROOTFS/opt/edgelm" "$ROOTFS/tmp/wheels"
    platforms=""
    for v in 17 27 28 31 34 35 36; do platforms="$platforms --platform manylinux_2_${v}_aarch64"; done
    # shellcheck disable=SC2086
    .venv-edge/bin/pip download --quiet --only-binary=:all: $platforms --python-version 3.11 --implementation cp \
        -d "$ROOTFS/tmp/wheels" $WANT >"$CACHE/pip-download.log" 2>&1 \
        || die "cannot download the aarch64 wheels of $WANT (no network to PyPI?); see $CACHE/pip-download.log"
    in_pi /usr/bin/python3 -m venv /opt/edgelm
    # shellcheck disable=SC2086
    in_pi /opt/edgelm/bin/python -m pip install --quiet --no-index --find-links /tmp/wheels $WANT \
        || { rm -rf "$ROOTFS/opt/edgelm"; die "the offline install of the aarch64 wheels failed"; }
    echo "$WANT" >"$ROOTFS/opt/edgelm/.requirements"
fi

# A bare copy of the device's files: edge_runtime/, the model, the bundle, the tests
WORK=$ROOTFS/work
rm -rf "$WORK"
mkdir -p "$WORK/tests" "$WORK/model"
cp -r edge_runtime "$WORK/"
cp -r tests/edge tests/arm64 tests/__init__.py "$WORK/tests/"
for f in "$MODEL"/*; do  # the run less its training state (the device tests read data.npz)
    case ${f##*/} in checkpoints | logs | model | bench) ;; *) cp -r "$f" "$WORK/model/" ;; esac
done
cp "$TEXT" "$WORK/model/sample.txt"
[ -n "$NUMBERS_ONLY" ] || cp -r "$SWEEP/bundle" "$WORK/bundle"
find "$WORK" -name __pycache__ -prune -exec rm -rf {} +
pi() { in_pi /bin/sh -c "cd /work && $*"; }
echo "aarch64 ($CPU, emulated): $(in_pi /usr/bin/uname -m), $(in_pi /opt/edgelm/bin/python --version)"

if [ -z "$NUMBERS_ONLY" ]; then
    echo "--- the device tests"
    pi "EDGELM_TEST_MODEL=/work/model/tflite /opt/edgelm/bin/python -m pytest -q -p no:cacheprovider tests/edge"
    echo "--- the README's device commands (timings under emulation mean nothing)"
    PY="/opt/edgelm/bin/python edge_runtime/predict.py"
    POINTS=bundle/operating_points.json
    pi "$PY suggest --model model --text 'to be or not to '"
    pi "$PY suggest --model model --text 'my good lo'"
    pi "$PY eval model/sample.txt --model model"
    pi "$PY bench --model model --variant all --threads 1 --steps 50 --warmup 5 >/dev/null && echo bench: ran"
    pi "$PY pick --points $POINTS --max-bytes 10000000 --steps 50"
    pi "$PY suggest --points $POINTS --budget-ms 1000 --text 'to be or not to '"
fi

echo "--- the same numbers as on x86_64"
mkdir -p "$(dirname "$JSON")"
OUTS=$CACHE/outputs
mkdir -p "$OUTS"
.venv-edge/bin/python tests/arm64/outputs.py "$MODEL" "$TEXT" --max-tokens "$TOKENS" --out "$OUTS/x86_64.json"
pi "/opt/edgelm/bin/python tests/arm64/outputs.py model model/sample.txt --max-tokens $TOKENS --cpu $CPU --out /work/aarch64.json"
cp "$WORK/aarch64.json" "$OUTS/aarch64.json"
.venv-edge/bin/python tests/arm64/compare.py "$OUTS/x86_64.json" "$OUTS/aarch64.json" --json "$JSON"
echo "make test-arm64: passed ($JSON)"
