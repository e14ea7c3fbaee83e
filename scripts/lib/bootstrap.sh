#!/usr/bin/env bash
# Shared set-up of scripts/demo and scripts/test, sourced by both: checks
# Python, installs the Debian packages the project needs, and keeps the
# virtualenv .venv at the repository root up to date with pyproject.toml.
#
# Usage (from a script in scripts/):
#   source "$(dirname "${BASH_SOURCE[0]}")/lib/bootstrap.sh"
#   bootstrap demo   # or: bootstrap test
#
# Quiet unless something goes wrong, or something has to be installed.

set -euo pipefail

# Debian packages every use of the project needs, space-separated.
# portaudio19-dev: PyAudio has no Linux wheel and builds against it.
# libsystemd-dev, pkg-config, gcc, python3-dev: pip builds systemd-python (sd_notify, journald).
APT_PACKAGES="python3-venv libsystemd-dev pkg-config gcc python3-dev portaudio19-dev"
# Debian packages only the tests need, space-separated.
# systemd, systemd-container: systemd-analyze and systemd-nspawn run the unit under real systemd.
# pulseaudio, pulseaudio-utils, libasound2-plugins, alsa-utils: a private sound
# server and ALSA plugins, so the tests run the real PyAudio path without a sound card.
# mtools, dosfstools, fdisk, e2fsprogs: test_flash.py builds Raspberry-Pi-OS-shaped images
# and reads them without mounting; python3-yaml parses cloud-init's user-data as cloud-init
# does; shellcheck checks the firstrun.sh that scripts/flash writes.
APT_TEST_PACKAGES="systemd systemd-container openssl alsa-utils libasound2-plugins pulseaudio pulseaudio-utils"
APT_TEST_PACKAGES="$APT_TEST_PACKAGES mtools dosfstools fdisk e2fsprogs python3-yaml shellcheck"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="$REPO_ROOT/.venv"
# The interpreter the venv is made from; override with PYTHON=/path/to/python3.
PYTHON="${PYTHON:-python3}"

bootstrap_say() {
    printf '%s: %s\n' "${0##*/}" "$*" >&2
}

bootstrap_die() {
    bootstrap_say "$*"
    exit 1
}

bootstrap_check_python() {
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        bootstrap_die "$PYTHON not found: install Python 3.11 or newer" \
            "(sudo apt-get install -y python3)"
    fi
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        local version
        version="$("$PYTHON" -c 'import platform; print(platform.python_version())' 2>&1 || true)"
        bootstrap_die "Python 3.11 or newer is needed, and $PYTHON is $version"
    fi
}

bootstrap_venv_usable() {
    "$VENV/bin/python" -m pip --version >/dev/null 2>&1
}

# Succeeds if the venv is usable already, or if one can be made: the way to
# tell whether python3-venv (ensurepip) is missing, whatever Python this is.
bootstrap_venv_possible() {
    if bootstrap_venv_usable; then
        return 0
    fi
    local scratch status=0
    scratch="$(mktemp -d)"
    "$PYTHON" -m venv "$scratch/venv" >/dev/null 2>&1 || status=$?
    rm -rf "$scratch"
    return "$status"
}

# Prints those of the given Debian packages that are missing, space-separated.
bootstrap_missing_packages() {
    local package status missing=""
    for package in "$@"; do
        case "$package" in
            python3-venv)
                bootstrap_venv_possible || missing="$missing $package"
                ;;
            *)
                if ! command -v dpkg-query >/dev/null 2>&1; then
                    continue # not Debian: nothing to ask, the install will tell
                fi
                status="$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)"
                case "$status" in
                    *" ok installed") ;;
                    *) missing="$missing $package" ;;
                esac
                ;;
        esac
    done
    printf '%s\n' "${missing# }"
}

# Installs the given Debian packages that are missing: as root, with apt-get;
# otherwise prints the command to run and exits 1.
bootstrap_packages() {
    local missing
    missing="$(bootstrap_missing_packages "$@")"
    if [ -z "$missing" ]; then
        return 0
    fi
    local -a packages
    read -r -a packages <<<"$missing"
    if [ "$(id -u)" -ne 0 ]; then
        bootstrap_say "missing Debian packages: ${packages[*]}; install them with:"
        printf 'sudo apt-get install -y --no-install-recommends %s\n' "${packages[*]}" >&2
        exit 1
    fi
    command -v apt-get >/dev/null 2>&1 ||
        bootstrap_die "missing packages: ${packages[*]}, and no apt-get to install them"
    bootstrap_say "installing Debian packages: ${packages[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || bootstrap_die "apt-get update failed"
    apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null ||
        bootstrap_die "apt-get install ${packages[*]} failed"
    missing="$(bootstrap_missing_packages "$@")"
    case " $missing " in
        "  ") ;;
        *" python3-venv "*)
            bootstrap_die "'$PYTHON -m venv' still fails after apt-get install python3-venv;" \
                "if $PYTHON is not Debian's, set PYTHON=/usr/bin/python3" ;;
        *) bootstrap_die "still missing after apt-get install: $missing" ;;
    esac
}

# Makes .venv if it is not there (or broken), and installs the project into it
# (editable) when pyproject.toml changed since the last install of that kind.
# $1: "demo" installs the package, "test" the package and its test extra.
bootstrap_venv() {
    local kind="$1" spec hash stamp
    case "$kind" in
        demo) spec="$REPO_ROOT" ;;
        test) spec="${REPO_ROOT}[test]" ;;
        *) bootstrap_die "bootstrap: unknown kind $kind (demo or test)" ;;
    esac
    if ! bootstrap_venv_usable; then
        bootstrap_say "creating $VENV"
        "$PYTHON" -m venv --clear "$VENV" >/dev/null || bootstrap_die "could not create $VENV"
    fi
    hash="$(sha256sum "$REPO_ROOT/pyproject.toml" | cut -d ' ' -f 1)"
    # A test install also serves the demo; a demo install does not serve the tests.
    for stamp in "$VENV/.bootstrap-$kind" "$VENV/.bootstrap-test"; do
        if [ "$(cat "$stamp" 2>/dev/null || true)" = "$hash" ]; then
            return 0
        fi
    done
    bootstrap_say "installing appliance${spec#"$REPO_ROOT"} into $VENV (pyproject.toml is new or changed)"
    rm -f "$VENV"/.bootstrap-*
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$spec" ||
        bootstrap_die "pip install -e '$spec' failed"
    printf '%s\n' "$hash" >"$VENV/.bootstrap-$kind"
}

# The whole set-up. $1: "demo" or "test".
bootstrap() {
    local kind="$1"
    bootstrap_check_python
    if [ "$kind" = test ]; then
        # shellcheck disable=SC2086 # word splitting of the lists is intended
        bootstrap_packages $APT_PACKAGES $APT_TEST_PACKAGES
    else
        # shellcheck disable=SC2086 # word splitting of the list is intended
        bootstrap_packages $APT_PACKAGES
    fi
    bootstrap_venv "$kind"
}
