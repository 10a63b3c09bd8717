#!/usr/bin/env bash
# make demo: a local control plane, the operator, the example shop running for real (one shop process
# per pod, tests/support/podapps.py), a client asking every pod throughout, a swap that every pod
# acknowledges, a swap one provider NACKs and the rollback, then `kubectl describe component cache`.
# Stops everything it started, also on Ctrl-C or failure.
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
PODS_PID=""
CLIENT_PID=""

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "kubectl $*"; "$KUBECTL" "$@"; }

stop_pid() {  # stop_pid PID: SIGTERM, then SIGKILL after 10 s
  local pid=$1
  [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid"
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  step "stopping what the demo started"
  stop_pid "$CLIENT_PID"
  stop_pid "$PODS_PID" && [[ -n "$PODS_PID" ]] && echo "shop processes stopped (their logs: $DIR/pods/*/app.log)"
  if [[ -n "$OPERATOR_PID" ]] && kill -0 "$OPERATOR_PID" 2>/dev/null; then
    kill -TERM "$OPERATOR_PID"
    for _ in $(seq 50); do kill -0 "$OPERATOR_PID" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$OPERATOR_PID" 2>/dev/null && kill -KILL "$OPERATOR_PID"
    echo "operator stopped (log: $DIR/operator.log)"
  fi
  "$PY" -m hack.cluster.localcluster down --dir "$DIR"
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
"$PY" -m hack.cluster.localcluster down --dir "$DIR" >/dev/null 2>&1 || true   # a previous demo that was killed
"$PY" -m hack.cluster.localcluster up --dir "$DIR"
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

# What each shop pod acknowledges (docs/acknowledgements.md), asked at the pod's IP like the operator does.
acks() {
  local name ip
  while read -r name ip; do
    printf '  %-28s %-16s ' "$name" "$ip"
    curl -fsS --max-time 2 "http://$ip:9901/oneiric/v1/acks" 2>/dev/null | "$PY" -c '
import json, sys
slot = json.load(sys.stdin)["slots"].get("adapter/cache") or {}
provider, state, digest = slot.get("provider", "-"), slot.get("state", "-"), slot.get("digest", "")[:15]
good = (slot.get("lastGood") or {}).get("provider", "-")
error = (" error: " + slot["error"][:70]) if slot.get("error") else ""
print(f"{provider:10} {state:8} {digest}  serving {good}{error}")
' || echo "(no answer)"
  done < <("$KUBECTL" get pods -n "$NS" -l app=shop-web -o jsonpath='{range .items[*]}{.metadata.name}{" "}{.status.podIP}{"\n"}{end}')
}

step "applying the example shop (examples/shop) and starting one real shop process per pod"
"$KUBECTL" apply -n "$NS" -f examples/shop/10-workloads.yaml
"$KUBECTL" rollout status deployment/shop-web -n "$NS" --timeout=120s
# -P: tests/support/operator.py must not shadow the standard library's operator module.
# kwok pods run nothing: podapps plays the kubelet, runs `python -m shop` (examples/shop/app) bound to
# each pod's IP, and projects the ConfigMap into each pod's folder 0-3 s late, as a kubelet would.
"$PY" -P tests/support/podapps.py --cluster-dir "$DIR" -n "$NS" --folder "$DIR/pods" --max-delay 3 \
  >"$DIR/pods.log" 2>&1 &
PODS_PID=$!
"$KUBECTL" get pods -n "$NS" -l app=shop-web -o wide
"$KUBECTL" apply -n "$NS" -f examples/shop/
wait_for memory 60 '{.status.active.provider}' component cache -n "$NS"
wait_for Committed 90 '{.status.swap.phase}' component cache -n "$NS"
wait_for stripe 60 '{.status.active.provider}' component payments -n "$NS"
wait_for rabbitmq 120 '{.status.active.provider}' component queue -n "$NS"
run get components -n "$NS"
run get candidates -n "$NS"
echo "acknowledgements per pod:"
acks

step "a client asks every shop pod for products from now on (one line a second: the cache that served)"
mapfile -t TARGETS < <("$KUBECTL" get pods -n "$NS" -l app=shop-web -o jsonpath='{range .items[*]}{.metadata.name}={.status.podIP}{"\n"}{end}')
"$PY" -P tests/support/requestloop.py "${TARGETS[@]}" &
CLIENT_PID=$!
sleep 3

step "swap: the team overrides the cache to sqlite (InPlace; the gate waits for every pod's ack)"
run patch component cache -n "$NS" --type merge -p '{"spec":{"override":{"provider":"sqlite"}}}'
wait_for sqlite 60 '{.status.swap.to.provider}' component cache -n "$NS"
wait_for Committed 90 '{.status.swap.phase}' component cache -n "$NS"
run get component cache -n "$NS"
echo "acknowledgements per pod:"
acks

step "NACK: override to dragonfly; its server refuses connections, a pod says Failed, the swap rolls back"
run patch component cache -n "$NS" --type merge -p '{"spec":{"override":{"provider":"dragonfly"}}}'
# The rollback is over as soon as dragonfly is quarantined (the swap history keeps the RolledBack entry).
wait_for Quarantined 90 '{.status.phase}' candidate cache-dragonfly -n "$NS"
echo "acknowledgements per pod (after the rollback: the NACK is in the history below, each pod back on sqlite):"
acks
run get candidate cache-dragonfly -n "$NS"
run get component cache -n "$NS" -o 'jsonpath={range .status.history[*]}{.result}{"  "}{.from.provider}{" -> "}{.to.provider}{"  "}{.message}{"\n"}{end}'

step "fall-through: the override names a quarantined candidate, so priority decides again (memory)"
wait_for memory 60 '{.status.active.provider}' component cache -n "$NS"
wait_for Committed 90 '{.status.swap.phase}' component cache -n "$NS"
run get component cache -n "$NS"
echo "acknowledgements per pod:"
acks

step "progressive: the cache goes to sqlite on one pod first, the others keep memory (no restart)"
run patch component cache -n "$NS" --type merge -p '{"spec":{"swap":{"strategy":"Progressive","progressive":{
  "steps":[{"pods":1,"pauseSeconds":3600},{"percent":100}],
  "analysis":{"intervalSeconds":2,"minCalls":5,"maxErrorRatePercent":5}}}}}'
run patch component cache -n "$NS" --type merge -p '{"spec":{"override":{"provider":"sqlite"}}}'
wait_for 1 90 '{.status.swap.wave.applied}' component cache -n "$NS"
sleep 3   # a few client lines: one pod answers with sqlite, the others with memory
run get pods -n "$NS" -l app=shop-web -L wave.oneiric.dev/adapter.cache
run get component cache -n "$NS" -o wide
printf '$ %s\n' "kubectl oneiric why cache -n $NS"
.venv/bin/oneiric why cache -n "$NS" --kubeconfig "$KUBECONFIG"
printf '$ %s\n' "kubectl oneiric promote cache -n $NS"
.venv/bin/oneiric promote cache -n "$NS" --kubeconfig "$KUBECONFIG"
wait_for Committed 90 '{.status.swap.phase}' component cache -n "$NS"
run get component cache -n "$NS" -o wide
echo "acknowledgements per pod:"
acks

step "a bad canary: flaky passes its health check, then raises on every 2nd read; the analysis rolls it back"
cat <<'YAML' | "$KUBECTL" apply -n "$NS" -f -
apiVersion: oneiric.dev/v1alpha1
kind: Candidate
metadata: {name: cache-flaky}
spec: {domain: adapter, key: cache, provider: flaky, source: vendor-acme, version: 0.9.0,
       capabilities: [kv, ttl], factory: "shop.adapters.cache:FlakyCache", config: {failEvery: 2}}
YAML
run patch component cache -n "$NS" --type merge -p '{"spec":{"override":{"provider":"flaky"}}}'
wait_for Quarantined 90 '{.status.phase}' candidate cache-flaky -n "$NS"
sleep 3   # client lines after the rollback: no failures anywhere
run get component cache -n "$NS" -o 'jsonpath={range .status.history[*]}{.result}{"  "}{.from.provider}{" -> "}{.to.provider}{"  "}{.message}{"\n"}{end}'
echo "acknowledgements per pod (the canary pod is back on sqlite):"
acks
echo "(flaky is quarantined, so priority picks memory and a progressive swap to it starts; the team"
echo " sets the override back to sqlite: the rollout to memory stops, its canary pod returns to sqlite)"
run patch component cache -n "$NS" --type merge -p '{"spec":{"override":{"provider":"sqlite"}}}'
wait_for sqlite 60 '{.status.swap.to.provider}' component cache -n "$NS"
wait_for Committed 90 '{.status.swap.phase}' component cache -n "$NS"
run get pods -n "$NS" -l app=shop-web -L wave.oneiric.dev/adapter.cache
sleep 2
stop_pid "$CLIENT_PID"
CLIENT_PID=""

step "why: kubectl describe component cache"
run describe component cache -n "$NS"

step "done: everything the demo started is stopped next"
