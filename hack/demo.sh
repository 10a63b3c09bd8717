#!/usr/bin/env bash
# make demo: a local control plane, the operator, the example shop, a swap and a rollback, then
# `kubectl describe component cache`. Stops everything it started, also on Ctrl-C or failure.
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=.cache/demo
NS=shop
PY=.venv/bin/python
if [[ ! -x "$PY" || ! -x .venv/bin/oneiric ]]; then
  echo "hack/demo.sh needs the project's virtualenv in $PWD/.venv, which is missing." >&2
  echo "Run \`make demo\`, or \`make install\` first (then hack/demo.sh works on its own)." >&2
  exit 2
fi
mkdir -p "$DIR"
BIN=$(bash hack/build-cluster-bins.sh | tail -1)
export KUBECONFIG=$PWD/$DIR/admin.kubeconfig
KUBECTL="$BIN/kubectl"
OPERATOR_PID=""

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "kubectl $*"; "$KUBECTL" "$@"; }

cleanup() {
  step "stopping what the demo started"
  if [[ -n "$OPERATOR_PID" ]] && kill -0 "$OPERATOR_PID" 2>/dev/null; then
    kill -TERM "$OPERATOR_PID"
    for _ in $(seq 50); do kill -0 "$OPERATOR_PID" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$OPERATOR_PID" 2>/dev/null && kill -KILL "$OPERATOR_PID"
    echo "operator stopped (log: $DIR/operator.log)"
  fi
  "$PY" hack/cluster/localcluster.py down --dir "$DIR"
}

# Wait until `kubectl get <args> -o jsonpath=<path>` prints <want>; show what it was on timeout.
wait_for() {
  local want=$1 timeout=$2 path=$3; shift 3
  local got=""
  for _ in $(seq $((timeout * 2))); do
    got=$("$KUBECTL" get "$@" -o "jsonpath=$path" 2>/dev/null || true)
    [[ "$got" == "$want" ]] && return 0
    sleep 0.5
  done
  echo "demo: timed out after ${timeout}s waiting for $* $path = $want (last: '$got'); operator log: $DIR/operator.log" >&2
  tail -20 "$DIR/operator.log" >&2 || true
  return 1
}

step "starting the local control plane in $DIR"
"$PY" hack/cluster/localcluster.py down --dir "$DIR" >/dev/null 2>&1 || true   # a previous demo that was killed
"$PY" hack/cluster/localcluster.py up --dir "$DIR"
trap cleanup EXIT

step "installing the CRDs"
"$KUBECTL" apply --server-side -f crds/ >/dev/null
"$KUBECTL" wait --for=condition=Established crd --all --timeout=60s >/dev/null
"$KUBECTL" get crd -l app.kubernetes.io/part-of=oneiric-operator

step "running the operator in the background (watching namespace $NS)"
"$KUBECTL" create namespace "$NS" >/dev/null
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
.venv/bin/oneiric run --kubeconfig "$KUBECONFIG" -n "$NS" --metrics-address 127.0.0.1 --metrics-port "$PORT" \
  --log-format text --settle-seconds 0.3 >"$DIR/operator.log" 2>&1 &
OPERATOR_PID=$!
for _ in $(seq 120); do
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
  kill -0 "$OPERATOR_PID" 2>/dev/null || { echo "demo: the operator exited:" >&2; tail -20 "$DIR/operator.log" >&2; exit 1; }
  sleep 0.5
done
echo "operator ready (pid $OPERATOR_PID, metrics http://127.0.0.1:$PORT/metrics, log $DIR/operator.log)"

step "applying the example shop (examples/shop)"
"$KUBECTL" apply -n "$NS" -f examples/shop/10-workloads.yaml
# Local control plane only: kwok's fake kubelet keeps shop-web unready while its cache is dragonfly,
# an application that fails with one provider (hack/cluster/kwok-stages.yaml).
"$KUBECTL" patch deployment shop-web -n "$NS" --type merge \
  -p '{"spec":{"template":{"metadata":{"annotations":{"oneiric.test/unready-with":"oneiric.dev/adapter.cache=dragonfly"}}}}}'
"$KUBECTL" rollout status deployment/shop-web -n "$NS" --timeout=120s
"$KUBECTL" apply -n "$NS" -f examples/shop/
wait_for redis 60 '{.status.active.provider}' component cache -n "$NS"
wait_for Committed 60 '{.status.swap.phase}' component cache -n "$NS"
wait_for stripe 60 '{.status.active.provider}' component payments -n "$NS"
wait_for rabbitmq 120 '{.status.active.provider}' component queue -n "$NS"
run get components -n "$NS"
run get candidates -n "$NS"

step "swap: the team overrides the cache to memcached (InPlace: ConfigMap + pod annotations, no restart)"
run patch component cache -n "$NS" --type merge -p '{"spec":{"override":{"provider":"memcached"}}}'
wait_for memcached 60 '{.status.active.provider}' component cache -n "$NS"
wait_for Committed 60 '{.status.swap.phase}' component cache -n "$NS"
run get component cache -n "$NS"
run get configmap oneiric-adapter-cache -n "$NS" -o 'jsonpath={.data.provider}{"  swap "}{.data.swapId}{"\n"}'
run get pods -n "$NS" -l app=shop-web -o 'custom-columns=POD:.metadata.name,CACHE:.metadata.annotations.oneiric\.dev/adapter\.cache'

step "rollback: override to dragonfly, which the application fails with (health gate PodsReady, 30 s)"
run patch component cache -n "$NS" --type merge -p '{"spec":{"override":{"provider":"dragonfly"}}}'
wait_for Verifying 30 '{.status.swap.phase}' component cache -n "$NS" || true
echo "verifying: shop-web pods unready with dragonfly ..."
# The rollback is over as soon as dragonfly is quarantined (the swap history keeps the RolledBack entry).
wait_for Quarantined 90 '{.status.phase}' candidate cache-dragonfly -n "$NS"
run get candidate cache-dragonfly -n "$NS"
run get component cache -n "$NS" -o 'jsonpath={range .status.history[*]}{.result}{"  "}{.from.provider}{" -> "}{.to.provider}{"  "}{.message}{"\n"}{end}'

step "fall-through: the override names a quarantined candidate, so priority decides again (redis)"
wait_for redis 60 '{.status.active.provider}' component cache -n "$NS"
wait_for Committed 60 '{.status.swap.phase}' component cache -n "$NS"
run get component cache -n "$NS"

step "why: kubectl describe component cache"
run describe component cache -n "$NS"

step "done: everything the demo started is stopped next"
