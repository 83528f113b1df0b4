#!/usr/bin/env bash
# Checks the Prometheus configuration and alert rules in deploy/prometheus with promtool, and
# runs the rules' unit tests. Installs Debian's `prometheus` package (which brings promtool)
# when it is missing. A failure names the step.
set -euo pipefail
cd "$(dirname "$0")/.."

current="setup"
trap 'printf "\nprometheus check FAILED at step: %s\n" "$current" >&2' ERR

current="install promtool"
if ! command -v promtool >/dev/null; then
  echo "installing prometheus (for promtool)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi
promtool --version | head -1

current="promtool check config"
promtool check config deploy/prometheus/prometheus.yml

current="promtool check rules"
promtool check rules deploy/prometheus/alerts.yml

current="promtool test rules"
promtool test rules deploy/prometheus/alerts.test.yml

trap - ERR
echo "prometheus configuration, rules and rule tests: OK"
