#!/usr/bin/env bash
# The demo: configure an endpoint in a scratch Compute directory and render its default
# user-endpoint template with sample user options, as an admin would test a template.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bin=$CARGO_TARGET_DIR/release
gce=$bin/globus-compute-endpoint
demo_dir=$(mktemp -d -t gcrs-demo.XXXXXX)
trap 'rm -rf "$demo_dir"' EXIT
export GLOBUS_COMPUTE_USER_DIR=$demo_dir/.globus_compute

say "globus-compute-endpoint version"
"$gce" version
say "globus-compute-endpoint configure demo"
"$gce" configure demo
say "files written"
ls -l "$GLOBUS_COMPUTE_USER_DIR/demo"
say "globus-compute-endpoint render-user-config (worker_init and endpoint_setup from user options)"
printf '%s\n' '{"worker_init": "echo hello from worker_init", "endpoint_setup": "module load python"}' \
    > "$demo_dir/options.json"
"$gce" render-user-config -e demo -o "$demo_dir/options.json"
say "globus-compute-endpoint list"
"$gce" list
