#!/usr/bin/env bash
# Checks the Prometheus configuration and alert rules in deploy/prometheus with promtool, and
# runs the rules' unit tests. Installs Debian's `prometheus` package (which brings promtool)
# when it is missing. A failure names the step.
set -Eeuo pipefail
cd "$(dirname "$0")/.."
STAGE="prometheus check"
# shellcheck source=ci/lib.sh
. ci/lib.sh
trap 'on_error "$LINENO" "$BASH_COMMAND"' ERR
trap 'failure_banner $?' EXIT

step "install promtool"
command -v promtool >/dev/null || apt_install --no-install-recommends prometheus
promtool --version | head -1

step "promtool check config"
promtool check config deploy/prometheus/prometheus.yml

step "promtool check rules"
promtool check rules deploy/prometheus/alerts.yml

step "promtool test rules"
promtool test rules deploy/prometheus/alerts.test.yml

echo "prometheus configuration, rules and rule tests: OK"
