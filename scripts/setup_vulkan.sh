#!/usr/bin/env bash
# Make a Vulkan device available for SAPIEN (ManiSkill3's simulator) on a machine without a GPU.
#
# Why: SAPIEN opens a Vulkan device even with rendering off (it builds render materials), so a
# CPU-only machine needs a software Vulkan driver (Mesa's lavapipe). Debian bookworm's stock
# lavapipe (Mesa 22.3) is refused by SAPIEN ("Failed to find a supported physical device": no
# descriptor indexing); Mesa >= 23 works, and bookworm-backports ships Mesa 25.
#
# What it does (idempotent):
#   * nothing if an NVIDIA GPU is present (its driver provides Vulkan) or if a Mesa Vulkan
#     driver >= 23 is already installed;
#   * otherwise, as root on Debian/Ubuntu with apt: if the stock mesa-vulkan-drivers is too old,
#     enable the "<codename>-backports" suite by deriving a sources entry from the machine's own
#     Debian sources (same mirror, same keyring; no address is hard-coded here), then install
#     mesa-vulkan-drivers (from backports where needed) and the Vulkan loader (libvulkan1).
# Exit status: 0 when a supported driver is (now) present, 1 otherwise, with a one-line reason.
set -euo pipefail

MIN_MESA_MAJOR=23
BACKPORTS_FILE=/etc/apt/sources.list.d/reppo-backports.sources

say() { echo "setup_vulkan: $*"; }
die() { echo "setup_vulkan: error: $*" >&2; exit 1; }

mesa_major() {
    # Major version of the installed mesa-vulkan-drivers package, or 0 if absent.
    local v
    v=$(dpkg-query -W -f='${db:Status-Abbrev} ${Version}' mesa-vulkan-drivers 2>/dev/null || true)
    case "$v" in
        ii*) v=${v#ii* }; v=${v#*:}; echo "${v%%.*}" ;;
        *) echo 0 ;;
    esac
}

loader_installed() {
    dpkg-query -W -f='${db:Status-Abbrev}' libvulkan1 2>/dev/null | grep -q '^ii'
}

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    say "NVIDIA GPU present; its driver provides Vulkan, nothing to do."
    exit 0
fi

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    die "apt/dpkg not available; install a Vulkan driver with descriptor indexing (Mesa >= ${MIN_MESA_MAJOR} lavapipe, mesa-vulkan-drivers) and the Vulkan loader with your package manager."
fi

if [ "$(mesa_major)" -ge "$MIN_MESA_MAJOR" ] && loader_installed; then
    say "mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers) and libvulkan1 already installed, nothing to do."
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    die "needs root to install mesa-vulkan-drivers (Mesa >= ${MIN_MESA_MAJOR}); rerun as root: sudo bash $0"
fi

export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC1091
. /etc/os-release
CODENAME="${VERSION_CODENAME:-}"
[ -n "$CODENAME" ] || die "cannot tell the distribution codename from /etc/os-release."

say "apt-get update"
apt-get update -qq

candidate=$(apt-cache policy mesa-vulkan-drivers | awk '/Candidate:/ {print $2}')
cand_major=${candidate#*:}; cand_major=${cand_major%%.*}
case "$cand_major" in ''|*[!0-9]*) cand_major=0 ;; esac

if [ "$cand_major" -ge "$MIN_MESA_MAJOR" ]; then
    say "installing mesa-vulkan-drivers $candidate from the configured suites"
    apt-get install -y -qq --no-install-recommends mesa-vulkan-drivers libvulkan1
else
    BP="${CODENAME}-backports"
    if ! grep -rqs -- "$BP" /etc/apt/sources.list /etc/apt/sources.list.d/; then
        # Derive the backports entry from the existing entry for the base suite: same URI(s),
        # components and keyring, suite replaced by <codename>-backports.
        if [ -f /etc/apt/sources.list.d/debian.sources ]; then
            awk -v base="$CODENAME" -v bp="$BP" '
                function flush() {
                    if (n && hit) { printf "%s", (printed ? "\n" : ""); printed = 1
                                    for (i = 1; i <= n; i++) print buf[i] }
                    n = 0; hit = 0
                }
                /^[[:space:]]*$/ { flush(); next }
                /^[[:space:]]*#/ { next }
                /^Suites:/ {
                    m = split($0, f, /[[:space:]]+/); hit = 0
                    for (i = 2; i <= m; i++) if (f[i] == base) hit = 1
                    buf[++n] = "Suites: " bp; next
                }
                { buf[++n] = $0 }
                END { flush() }
            ' /etc/apt/sources.list.d/debian.sources > "$BACKPORTS_FILE.tmp"
        elif [ -f /etc/apt/sources.list ]; then
            # one-line format: copy the first "deb ... <codename> ..." line with the suite swapped
            LIST_FILE="${BACKPORTS_FILE%.sources}.list"
            awk -v base="$CODENAME" -v bp="$BP" '
                $1 == "deb" { for (i = 2; i <= NF; i++) if ($i == base) { $i = bp; print; exit } }
            ' /etc/apt/sources.list > "$LIST_FILE.tmp"
            if [ -s "$LIST_FILE.tmp" ]; then mv "$LIST_FILE.tmp" "$LIST_FILE"; else rm -f "$LIST_FILE.tmp"; fi
        fi
        if [ -f "$BACKPORTS_FILE.tmp" ]; then
            if [ -s "$BACKPORTS_FILE.tmp" ]; then
                mv "$BACKPORTS_FILE.tmp" "$BACKPORTS_FILE"
            else
                rm -f "$BACKPORTS_FILE.tmp"
            fi
        fi
        grep -rqs -- "$BP" /etc/apt/sources.list /etc/apt/sources.list.d/ \
            || die "could not derive a $BP entry from /etc/apt/sources.list(.d); add the $BP suite and run: apt-get install -t $BP mesa-vulkan-drivers"
        say "enabled $BP (derived from the existing Debian sources)"
        apt-get update -qq
    fi
    say "installing mesa-vulkan-drivers from $BP"
    apt-get install -y -qq --no-install-recommends -t "$BP" mesa-vulkan-drivers libvulkan1
fi

if [ "$(mesa_major)" -ge "$MIN_MESA_MAJOR" ] && loader_installed; then
    say "installed mesa-vulkan-drivers $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers)"
    exit 0
fi
die "mesa-vulkan-drivers >= ${MIN_MESA_MAJOR} could not be installed (have: $(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || echo none))."
