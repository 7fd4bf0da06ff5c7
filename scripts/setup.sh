#!/usr/bin/env bash
# Installs everything this project needs on a Debian machine that has Rust, Python 3 and apt
# (Debian packages, RabbitMQ and PostgreSQL started, the Python venv with the pinned SDK, the
# release build), then runs the demo. Safe to run again: it only does what is missing.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ensure_rust
ensure_packages
ensure_services
ensure_venv
say "cargo build --release"
(cd "$REPO" && cargo build --workspace --release --quiet)
exec "$REPO/scripts/demo.sh"
