#!/usr/bin/env bash
# The demo, end to end on this machine:
#   1. an admin configures an endpoint and tests its user-endpoint template offline;
#   2. our web service starts (SQLite, local RabbitMQ), a client identity is created for it;
#   3. an endpoint registers with the service and comes online (ours when this build has
#      `start`, else the upstream Python endpoint 4.19.0 from the venv), as an unprivileged user;
#   4. the unmodified SDK's Executor submits a function and prints its result.
# Needs: the release build, the venv (scripts/setup.sh makes both), RabbitMQ on 127.0.0.1:5672,
# and port 5000 free (the SDK's "local" environment is http://localhost:5000).
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bin=$CARGO_TARGET_DIR/release
gce=$bin/globus-compute-endpoint
svc=$bin/gc-service
demo=$(mktemp -d -t gcrs-demo.XXXXXX)
chmod 755 "$demo"
pids=() user="" vhost=""
cleanup() {
    set +e
    for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null; done
    sleep 1
    [ -n "$user" ] && { pkill -KILL -u "$user" 2>/dev/null; sleep 0.5; userdel "$user" 2>/dev/null; }
    [ -n "$vhost" ] && rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1
    rm -rf "$demo"
}
trap cleanup EXIT

say "1. configure an endpoint and render its template with sample user options"
export GLOBUS_COMPUTE_USER_DIR=$demo/admin/.globus_compute
"$gce" configure --contact-email admin@example.org demo   # as root: a multi-user endpoint
printf '%s\n' '{"worker_init": "echo hello from worker_init", "endpoint_setup": "module load python"}' \
    > "$demo/options.json"
"$gce" render-user-config -e demo -o "$demo/options.json"
unset GLOBUS_COMPUTE_USER_DIR

say "2. start the web service on 127.0.0.1:5000"
exec 9>/tmp/gcrs-port-5000.lock
flock -w 600 9 || { echo "port 5000 is held by another run" >&2; exit 1; }
amqp=amqp://guest:guest@127.0.0.1:5672/%2F
if [ "$(id -u)" -eq 0 ] && command -v rabbitmqctl >/dev/null; then
    vhost=gcrs-demo-$$
    rabbitmqctl -q add_vhost "$vhost" >/dev/null
    rabbitmqctl -q set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
    amqp=amqp://guest:guest@127.0.0.1:5672/$vhost
fi
export GCRS_DATABASE_URL=sqlite://$demo/service.db GCRS_LOG=warn
eval "$("$svc" client create --name demo | sed 's/^/export /')"
setsid "$svc" serve --amqp-url "$amqp" >"$demo/service.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do port_open 5000 && break; sleep 0.1; done
port_open 5000 || { cat "$demo/service.log" >&2; exit 1; }
echo "service up; client $GLOBUS_COMPUTE_CLIENT_ID"

say "3. register an endpoint with it"
export GLOBUS_SDK_ENVIRONMENT=local GLOBUS_SDK_SERVICE_URL_AUTH=http://localhost:5000/auth/
if "$gce" --help 2>/dev/null | grep -qE '^  start '; then
    # A copy the unprivileged user can execute (the build directory may sit under /root).
    mkdir -p "$demo/bin" && cp "$gce" "$demo/bin/" && chmod 755 "$demo/bin" "$demo/bin/globus-compute-endpoint"
    ep_bin=$demo/bin/globus-compute-endpoint; echo "endpoint: ours"
else
    ep_bin=$GCRS_VENV/bin/globus-compute-endpoint; echo "endpoint: upstream 4.19.0 (this build has no 'start' yet)"
fi
home=$demo/home
mkdir -p "$home"
run_as=()
if [ "$(id -u)" -eq 0 ]; then
    # A root endpoint is a privileged multi-user endpoint; the demo runs an ordinary one.
    user=gcrsdemo$$
    useradd -M -d "$home" -s /bin/sh "$user"
    run_as=(runuser -u "$user" --)
fi
ep_env=(env -i HOME="$home" PATH="$demo/bin:$GCRS_VENV/bin:/usr/bin:/bin" LANG=C.UTF-8
    GLOBUS_SDK_ENVIRONMENT=local GLOBUS_SDK_SERVICE_URL_AUTH=http://localhost:5000/auth/
    GLOBUS_COMPUTE_CLIENT_ID="$GLOBUS_COMPUTE_CLIENT_ID" GLOBUS_COMPUTE_CLIENT_SECRET="$GLOBUS_COMPUTE_CLIENT_SECRET")
[ -n "$user" ] && chown "$user" "$home"
(cd "$home" && "${run_as[@]}" "${ep_env[@]}" "$ep_bin" configure demo >/dev/null)
ep_dir=$home/.globus_compute/demo
printf 'display_name: gcrs demo\nlocal_compute_services: true\nheartbeat_period: 5\n' > "$ep_dir/config.yaml"
printf 'heartbeat_period: 5\nidle_heartbeats_soft: 12\nengine:\n  type: ThreadPoolEngine\n  max_workers: 2\n' \
    > "$ep_dir/user_config_template.yaml.j2"
rm -f "$ep_dir/user_config_schema.json"
[ -n "$user" ] && chown -R "$user" "$home"
(cd "$home" && setsid "${run_as[@]}" "${ep_env[@]}" "$ep_bin" start demo >"$demo/endpoint.log" 2>&1) &
pids+=($!)
for _ in $(seq 600); do [ -s "$ep_dir/endpoint.json" ] && break; sleep 0.1; done
ep_id=$("$GCRS_PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["endpoint_id"])' "$ep_dir/endpoint.json") \
    || { cat "$demo/endpoint.log" >&2; exit 1; }
echo "endpoint $ep_id registered"

say "4. submit a function with the unmodified SDK"
GLOBUS_COMPUTE_USER_DIR=$demo/sdk "$GCRS_PYTHON" - "$ep_id" <<'PY'
import sys
from globus_compute_sdk import Executor

def hello(name):
    import getpass, platform, sys
    return f"hello {name} from {getpass.getuser()}@{platform.node()}, Python {sys.version.split()[0]}"

with Executor(endpoint_id=sys.argv[1]) as ex:
    print(ex.submit(hello, "world").result(timeout=120))
PY
say "demo done"
