# Shared helpers for the project scripts (sourced, not run).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export REPO
# One target directory outside the clone, shared by every build of this machine (CI included):
# a clean build on 2 cores is slow, an incremental one is not.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/gcrs-target}
# The venv is also run by other, unprivileged users (test endpoints, mapped users' workers), so
# it must sit where they can reach it: in the clone if they can, else under /opt.
if [ -z "${GCRS_VENV:-}" ]; then
    GCRS_VENV=$REPO/.venv
    if [ "$(id -u)" -eq 0 ] && ! runuser -u nobody -- test -x "$REPO/python" 2>/dev/null; then
        GCRS_VENV=/opt/gcrs/venv
    fi
fi
export GCRS_VENV
export GCRS_PYTHON=$GCRS_VENV/bin/python
export GCRS_SHARED_DIR=${GCRS_SHARED_DIR:-$REPO/../shared}

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Debian packages the build, the tests and the demo need; installed only when missing.
ensure_packages() {
    local want=(python3 python3-venv rabbitmq-server postgresql pkg-config gcc chromium chromium-driver openmpi-bin)
    local missing=()
    for p in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        say "installing Debian packages: ${missing[*]}"
        as_root apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    fi
}

# RabbitMQ on 127.0.0.1:5672 and PostgreSQL on 127.0.0.1:5432, started if not running.
ensure_services() {
    if ! port_open 5672; then
        say "starting RabbitMQ"
        as_root rabbitmq-server -detached || true
        for _ in $(seq 60); do port_open 5672 && break; sleep 1; done
        port_open 5672 || { echo "RabbitMQ did not come up on 127.0.0.1:5672" >&2; exit 1; }
    fi
    # The management API (127.0.0.1:15672) lets gc-service create one broker user per
    # endpoint (--broker-admin-url); enabling the plugin does not restart the broker.
    if ! port_open 15672; then
        say "enabling the RabbitMQ management plugin"
        as_root rabbitmq-plugins enable --quiet rabbitmq_management >/dev/null || true
        for _ in $(seq 30); do port_open 15672 && break; sleep 1; done
    fi
    if ! port_open 5432; then
        say "starting PostgreSQL"
        as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | tail -n1)" main start || true
        for _ in $(seq 30); do port_open 5432 && break; sleep 1; done
        port_open 5432 || { echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1; }
    fi
}

# The project's Python venv, built from Debian's python3 so that unprivileged (mapped) users
# can run it too; re-installed only when requirements.txt changed.
ensure_venv() {
    local req=$REPO/python/requirements.txt stamp=$GCRS_VENV/.requirements.sha256
    local sum; sum=$(sha256sum "$req" | cut -d' ' -f1)
    if [ ! -x "$GCRS_PYTHON" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
        say "creating Python venv $GCRS_VENV"
        /usr/bin/python3 -m venv "$GCRS_VENV"
        "$GCRS_PYTHON" -m pip install -q --disable-pip-version-check -r "$req"
        echo "$sum" > "$stamp"
    fi
}

ensure_rust() {
    command -v cargo >/dev/null || { echo "cargo not found: install Rust (rustup) first" >&2; exit 1; }
}
