#!/usr/bin/env bash
# Offline validation of everything deployment-related (run by `make validate-deploy`,
# which `make test` calls). Nothing here needs Docker, a cluster or the network:
#
#   k8s        kubectl kustomize renders k8s/base, k8s/overlays/{kind,1m,nats} and
#              monitoring/; every object validates (strict) against the bundled
#              Kubernetes JSON schemas (kubernetes-validate); semantic checks:
#              1m = 1,000,000 virtual clients over 10 pods, INSTANCE_ID from the
#              pod name, env names from the contract, probes, resources, scrape
#              annotations, headless Services, HPA, EMQX DNS-SRV discovery;
#              nats = nats-server in place of EMQX, both binaries on nats://.
#   compose    docker-compose.yml validates against the Compose Specification
#              schema (raw and with ${VAR:-default} interpolated); every mounted
#              path, env_file, build context and Dockerfile exists; the NATS
#              override docker-compose.nats.yml validates, and merged with the
#              base it runs nats-server, no EMQX, both binaries on nats://.
#   docker     both Dockerfiles parse (BuildKit parser): multi-stage, non-root
#              numeric USER, EXPOSE, no HEALTHCHECK.
#   prometheus promtool check config (compose + k8s variants), check rules;
#              every Grafana query is valid PromQL (checked through promtool).
#   metrics    every metric in the recording rules and the Grafana dashboard is a
#              contract metric (monitoring/metric-names.txt, compared with
#              shared/CONTRACT.md when that file is beside the repo).
#   dashboards loadgen/src/web/dashboard.html is self-contained (no external
#              URL) and has the ids/attributes tests read; scripts/dashboard.sh
#              renders a snapshot from a local fake /stats.
#
# Output: one "ok"/"FAIL" line per check, then "N passed, N failed".
# Exit status is non-zero if any check failed.
# Env: VALIDATE_SKIP_INSTALL=1 (do not run install-validators.sh),
#      KUBECTL (default: .venv-validate/bin/kubectl), K8S_SCHEMA_VERSIONS
#      (default "1.29.0 1.37.0"), VERBOSE=1 (print output of passing checks).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
VENV=${VALIDATE_VENV:-$ROOT/.venv-validate}

if [ "${VALIDATE_SKIP_INSTALL:-0}" != 1 ]; then
  if ! bash scripts/install-validators.sh; then
    echo "FAIL install-validators (see messages above)"
    echo "0 passed, 1 failed"
    exit 1
  fi
fi

PY="$VENV/bin/python"
KUBECTL=${KUBECTL:-$VENV/bin/kubectl}
K8S_SCHEMA_VERSIONS=${K8S_SCHEMA_VERSIONS:-"1.29.0 1.37.0"}
TMP=$(mktemp -d)
FAKE_PID=""
cleanup() { [ -n "$FAKE_PID" ] && kill "$FAKE_PID" 2>/dev/null; rm -rf "$TMP"; }
trap cleanup EXIT

PASS=0
FAIL=0
check() {
  local name=$1; shift
  local out rc
  out=$("$@" 2>&1); rc=$?
  if [ $rc -eq 0 ]; then
    PASS=$((PASS + 1)); echo "ok   $name"
    if [ "${VERBOSE:-0}" = 1 ] && [ -n "$out" ]; then printf '%s\n' "$out" | sed 's/^/     /'; fi
  else
    FAIL=$((FAIL + 1)); echo "FAIL $name"
    printf '%s\n' "$out" | head -n 60 | sed 's/^/     /'
  fi
}

# ---------------------------------------------------------------------------
# Python helpers (one file, one sub-command per check)
# ---------------------------------------------------------------------------
cat > "$TMP/checks.py" <<'PYEOF'
import glob, json, os, re, sys, subprocess
import yaml

ROOT = os.getcwd()

# Environment variables of the external contract (shared/CONTRACT.md).
COMMON_ENV = {"BROKER", "MQTT_VERSION", "MQTT_USERNAME", "MQTT_PASSWORD", "TLS_CA_FILE",
              "TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_INSECURE", "METRICS_PORT", "METRICS_ADDR",
              "RUST_LOG"}
LOADGEN_ENV = COMMON_ENV | {"SCENARIO", "VIRTUAL_CLIENTS", "CONNECTIONS", "SHARDS", "INTERVAL_MS",
              "MAX_INFLIGHT_PER_CLIENT", "TIMEOUT_MS", "REQ_QOS", "RESP_QOS", "PAYLOAD_BYTES",
              "WARMUP_SEC", "DURATION_SEC", "INSTANCE_ID", "REPORT_JSON", "PUBLISH_WORKERS",
              "BATCH_SIZE"}
WORKER_ENV = COMMON_ENV | {"MQTT_BROKER", "MQTT_SUB", "SHARE_GROUP", "CONNECTIONS", "MIN_WORKERS",
              "MAX_WORKERS", "QUEUE_CAP", "SCALE_UP_THRESHOLD", "SCALE_DOWN_THRESHOLD",
              "SCALE_INTERVAL_MS", "WORKERS_PER_SCALE", "MODE", "SLEEP_MS", "CPU_WORK",
              "DROP_ON_FULL", "PUB_QOS"}
PORTS = {"loadgen": 8090, "worker": 8080}


def source_env(*dirs):
    """Env names the binaries declare (clap `env = "..."`), when the sources are there."""
    names = set()
    for d in dirs:
        for f in glob.glob(os.path.join(ROOT, d, "**", "*.rs"), recursive=True):
            names.update(re.findall(r'\benv\s*=\s*"([A-Z][A-Z0-9_]*)"', open(f, errors="replace").read()))
    return names


# Allowed = the contract's names plus whatever the binaries really read.
LOADGEN_ENV |= source_env("loadgen/src", "common/src")
WORKER_ENV |= source_env("worker/src", "common/src")


class Fail(Exception):
    pass


def need(cond, msg):
    if not cond:
        raise Fail(msg)


def load_all(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def env_of(container):
    out = {}
    for e in container.get("env", []) or []:
        out[e["name"]] = e
    return out


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def find(docs, kind, name):
    for d in docs:
        if d.get("kind") == kind and d["metadata"]["name"] == name:
            return d
    raise Fail(f"{kind}/{name} missing")


# ---- k8s -------------------------------------------------------------------
def k8s_common(path, broker="emqx"):
    """Checks every overlay must satisfy (broker "nats": the NATS variant, no EMQX)."""
    docs = load_all(path)
    need(docs, "render is empty")
    for d in docs:
        if d["kind"] != "Namespace":
            need(d["metadata"].get("namespace") == "mqtt-rr-bench",
                 f"{d['kind']}/{d['metadata']['name']} not in namespace mqtt-rr-bench")
    lg = find(docs, "StatefulSet", "loadgen")
    wk = find(docs, "Deployment", "worker")
    for obj, comp, allowed in ((lg, "loadgen", LOADGEN_ENV), (wk, "worker", WORKER_ENV)):
        spec = pod_spec(obj)
        tmpl_labels = obj["spec"]["template"]["metadata"]["labels"]
        ann = obj["spec"]["template"]["metadata"].get("annotations", {})
        (c,) = [c for c in spec["containers"] if c["name"] == comp]
        env = env_of(c)
        bad = sorted(set(env) - allowed)
        need(not bad, f"{comp}: env names not in the contract: {bad}")
        port = int(env["METRICS_PORT"]["value"]) if "METRICS_PORT" in env else PORTS[comp]
        need(port == PORTS[comp], f"{comp}: METRICS_PORT {port} != {PORTS[comp]}")
        need(ann.get("prometheus.io/scrape") == "true", f"{comp}: prometheus.io/scrape annotation")
        need(ann.get("prometheus.io/port") == str(port), f"{comp}: prometheus.io/port != METRICS_PORT")
        need(ann.get("prometheus.io/path") == "/metrics", f"{comp}: prometheus.io/path")
        cports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        need(cports.get("metrics") == port, f"{comp}: containerPort 'metrics' != {port}")
        rp, lp = c.get("readinessProbe", {}), c.get("livenessProbe", {})
        need(rp.get("httpGet", {}).get("path") == "/ready", f"{comp}: readinessProbe must GET /ready")
        need(lp.get("httpGet", {}).get("path") == "/health", f"{comp}: livenessProbe must GET /health")
        for p in (rp, lp):
            need(p["httpGet"]["port"] in ("metrics", port), f"{comp}: probe port")
        res = c.get("resources", {})
        for k in ("requests", "limits"):
            need({"cpu", "memory"} <= set(res.get(k, {})), f"{comp}: resources.{k} cpu+memory")
        need(spec.get("securityContext", {}).get("runAsNonRoot") is True, f"{comp}: runAsNonRoot")
        need(":" in c["image"] and not c["image"].endswith(":latest"), f"{comp}: image needs a fixed tag")
        # a headless Service selecting exactly these pods, exposing the metrics port
        svc = find(docs, "Service", comp)
        need(svc["spec"].get("clusterIP") == "None", f"{comp}: Service must be headless")
        sel = svc["spec"]["selector"]
        need(all(tmpl_labels.get(k) == v for k, v in sel.items()), f"{comp}: Service selector does not match pods")
        need(any(p["port"] == port and p.get("name") == "metrics" for p in svc["spec"]["ports"]),
             f"{comp}: Service port 'metrics' {port}")
        b = env.get("BROKER") or env.get("MQTT_BROKER")
        schemes = "nats|tls" if broker == "nats" else "mqtt|tcp|mqtts|ssl|ws|wss"
        need(b and re.match(rf"^({schemes})://", b.get("value", "")), f"{comp}: BROKER url")
    # loadgen: StatefulSet with unique INSTANCE_ID per pod
    need(lg["spec"]["serviceName"] == "loadgen", "loadgen StatefulSet serviceName must be the headless Service")
    (c,) = [c for c in pod_spec(lg)["containers"] if c["name"] == "loadgen"]
    iid = env_of(c).get("INSTANCE_ID", {})
    need(iid.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
         "loadgen INSTANCE_ID must come from the pod name (fieldRef metadata.name)")
    # worker HPA
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    need(len(hpas) == 1, "exactly one HPA expected")
    h = hpas[0]
    need(h["apiVersion"] == "autoscaling/v2", "HPA must be autoscaling/v2")
    ref = h["spec"]["scaleTargetRef"]
    need(ref["kind"] == "Deployment" and ref["name"] == "worker", "HPA must target Deployment/worker")
    need(any(m["type"] == "Resource" and m["resource"]["name"] == "cpu" for m in h["spec"]["metrics"]),
         "HPA must scale on CPU")
    need(h["spec"]["minReplicas"] <= h["spec"]["maxReplicas"], "HPA min > max")
    wc = [c for c in pod_spec(wk)["containers"] if c["name"] == "worker"][0]
    need("cpu" in wc["resources"]["requests"], "worker needs a CPU request for the CPU-based HPA")
    if broker == "nats":
        return docs, lg
    # EMQX cluster discovery through DNS SRV of its headless Service
    em = find(docs, "StatefulSet", "emqx")
    (ec,) = pod_spec(em)["containers"]
    eenv = env_of(ec)
    hs = find(docs, "Service", em["spec"]["serviceName"])
    need(hs["spec"].get("clusterIP") == "None", "EMQX serviceName must be a headless Service")
    need(hs["spec"].get("publishNotReadyAddresses") is True, "EMQX headless Service: publishNotReadyAddresses")
    need(eenv["EMQX_CLUSTER__DISCOVERY_STRATEGY"]["value"] == "dns", "EMQX discovery strategy dns")
    need(eenv["EMQX_CLUSTER__DNS__RECORD_TYPE"]["value"] == "srv", "EMQX dns record type srv")
    dns = eenv["EMQX_CLUSTER__DNS__NAME"]["value"]
    need(dns.startswith(hs["metadata"]["name"] + "."), "EMQX_CLUSTER__DNS__NAME must be the headless Service")
    need(eenv["EMQX_HOST"]["value"] == "$(POD_NAME).$(EMQX_CLUSTER__DNS__NAME)",
         "EMQX_HOST must be <pod>.<headless service> (the SRV target)")
    need(eenv["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name", "EMQX POD_NAME")
    names = list(eenv)
    for var in ("POD_NAME", "POD_NAMESPACE", "EMQX_NAME", "EMQX_CLUSTER__DNS__NAME", "EMQX_HOST"):
        for user in names:
            v = eenv[user].get("value", "")
            if f"$({var})" in v:
                need(names.index(var) < names.index(user), f"EMQX env {user} uses $({var}) before it is defined")
    cms = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"].startswith("emqx-env")]
    need(cms, "ConfigMap emqx-env missing")
    for k in list(cms[0]["data"]) + names:
        if k.startswith("EMQX_"):
            need(re.fullmatch(r"EMQX_[A-Z0-9]+(_{1,2}[A-Z0-9]+)*", k), f"bad EMQX env name {k}")
    need(cms[0]["data"].get("EMQX_LISTENERS__WS__DEFAULT__BIND", "").endswith(":8083"), "EMQX WebSocket listener on 8083")
    return docs, lg


def total_clients(lg):
    (c,) = [c for c in pod_spec(lg)["containers"] if c["name"] == "loadgen"]
    vc = int(env_of(c)["VIRTUAL_CLIENTS"]["value"])
    return lg["spec"].get("replicas", 1), vc


def cmd_k8s_kind(path):
    docs, lg = k8s_common(path)
    reps, vc = total_clients(lg)
    need(reps == 1, f"kind: expected 1 loadgen replica, got {reps}")
    need(vc * reps == 10000, f"kind: expected 10,000 virtual clients, got {vc * reps}")
    print(f"kind: {reps} x {vc} = {reps * vc} virtual clients")


def cmd_k8s_1m(path):
    docs, lg = k8s_common(path)
    reps, vc = total_clients(lg)
    need(reps == 10, f"1m: expected 10 loadgen replicas, got {reps}")
    need(reps * vc == 1_000_000, f"1m: {reps} x {vc} = {reps * vc}, not 1,000,000")
    em = find(docs, "StatefulSet", "emqx")
    need(em["spec"]["replicas"] == 3, "1m: EMQX must run 3 replicas")
    # unique INSTANCE_IDs: StatefulSet pod names are <name>-0..N-1
    ids = [f"{lg['metadata']['name']}-{i}" for i in range(reps)]
    need(len(set(ids)) == reps, "instance ids not unique")
    (c,) = [c for c in pod_spec(lg)["containers"] if c["name"] == "loadgen"]
    iv = int(env_of(c)["INTERVAL_MS"]["value"])
    print(f"1m: {reps} x {vc} = {reps * vc:,} virtual clients, ids {ids[0]}..{ids[-1]}, "
          f"offered {reps * vc * 1000 / iv:,.0f} req/s (INTERVAL_MS={iv})")


def cmd_k8s_nats(path):
    """The NATS variant: nats-server behind Service nats, no EMQX left, both binaries on it."""
    docs, lg = k8s_common(path, broker="nats")
    reps, vc = total_clients(lg)
    need(reps * vc == 10000, f"nats: expected 10,000 virtual clients, got {reps * vc}")
    left = [f"{d['kind']}/{d['metadata']['name']}" for d in docs if "emqx" in d["metadata"]["name"]]
    need(not left, f"nats: EMQX objects left: {left}")
    nd = find(docs, "Deployment", "nats")
    (c,) = pod_spec(nd)["containers"]
    need(re.match(r"^nats:2\.9\.\d+", c["image"]), f"nats: image must be nats:2.9.x (Debian's is 2.9), is {c['image']}")
    cports = {p["name"]: p["containerPort"] for p in c["ports"]}
    need(cports.get("client") == 4222, "nats: containerPort 'client' 4222")
    for probe in ("readinessProbe", "livenessProbe"):
        need(c.get(probe, {}).get("httpGet", {}).get("path") == "/healthz", f"nats: {probe} must GET /healthz")
    need(pod_spec(nd).get("securityContext", {}).get("runAsNonRoot") is True, "nats: runAsNonRoot")
    svc = find(docs, "Service", "nats")
    need(svc["spec"]["selector"].items() <= nd["spec"]["template"]["metadata"]["labels"].items(),
         "nats: Service selector does not match the pods")
    need(any(p["port"] == 4222 for p in svc["spec"]["ports"]), "nats: Service port 4222")
    for kind, name in (("StatefulSet", "loadgen"), ("Deployment", "worker")):
        (c,) = [c for c in pod_spec(find(docs, kind, name))["containers"] if c["name"] == name]
        b = env_of(c)["BROKER"]["value"]
        need(b == "nats://nats:4222", f"{name}: BROKER must be nats://nats:4222, is {b}")
        need("MQTT_VERSION" not in env_of(c), f"{name}: MQTT_VERSION means nothing over NATS")
    print(f"nats: {reps} x {vc} virtual clients, {pod_spec(nd)['containers'][0]['image']}")


def cmd_k8s_monitoring(path):
    docs = load_all(path)
    kinds = {(d["kind"], d["metadata"]["name"].rsplit("-", 1)[0] if d["kind"] == "ConfigMap" else d["metadata"]["name"]) for d in docs}
    for want in (("Deployment", "prometheus"), ("Deployment", "grafana"), ("ConfigMap", "prometheus-config"),
                 ("ConfigMap", "prometheus-rules"), ("ConfigMap", "grafana-dashboards")):
        need(want in kinds, f"monitoring: {want} missing")
    cfg = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("prometheus-config")][0]
    with open("monitoring/k8s/prometheus.yml") as f:
        need(cfg["data"]["prometheus.yml"] == f.read(), "prometheus-config differs from monitoring/k8s/prometheus.yml")


# ---- compose -----------------------------------------------------------------
INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def interpolate(text):
    def sub(m):
        if m.group(4):
            return ""
        op, arg = m.group(2), m.group(3)
        if op in (":-", "-"):
            return arg
        return ""
    return INTERP.sub(sub, text.replace("$$", "\0")).replace("\0", "$")


def cmd_compose_interpolate(src, dst):
    with open(src) as f:
        text = interpolate(f.read())
    doc = yaml.safe_load(text)

    def fix(o):  # numbers that came from ${VAR:-N} stay strings in YAML: make them ints where compose wants ints
        if isinstance(o, dict):
            return {k: (int(v) if k == "replicas" and isinstance(v, str) and v.isdigit() else fix(v)) for k, v in o.items()}
        if isinstance(o, list):
            return [fix(v) for v in o]
        return o
    with open(dst, "w") as f:
        json.dump(fix(doc), f)


def cmd_compose_semantics(path):
    with open(path) as f:
        doc = yaml.safe_load(interpolate(f.read()))
    svcs = doc["services"]
    for want in ("emqx", "worker", "loadgen", "prometheus", "grafana"):
        need(want in svcs, f"service {want} missing")
    problems = []
    for name, s in svcs.items():
        for v in s.get("volumes", []) or []:
            src = v.split(":")[0] if isinstance(v, str) else (v.get("source") if v.get("type") == "bind" else None)
            if src and (src.startswith(".") or src.startswith("/")):
                if not os.path.exists(os.path.join(ROOT, src)):
                    problems.append(f"{name}: mounted path {src} does not exist")
        for ef in ([s["env_file"]] if isinstance(s.get("env_file"), str) else s.get("env_file", []) or []):
            ef = ef if isinstance(ef, str) else ef["path"]
            if not os.path.isfile(os.path.join(ROOT, ef)):
                problems.append(f"{name}: env_file {ef} does not exist")
        b = s.get("build")
        if b:
            ctx = b if isinstance(b, str) else b.get("context", ".")
            if not os.path.isdir(os.path.join(ROOT, ctx)):
                problems.append(f"{name}: build context {ctx} missing")
            if isinstance(b, dict) and b.get("dockerfile") and not os.path.isfile(os.path.join(ROOT, ctx, b["dockerfile"])):
                problems.append(f"{name}: dockerfile {b['dockerfile']} missing")
        deps = s.get("depends_on", [])
        for d in (deps if isinstance(deps, list) else list(deps)):
            if d not in svcs:
                problems.append(f"{name}: depends_on unknown service {d}")
    for comp, allowed in (("loadgen", LOADGEN_ENV), ("worker", WORKER_ENV)):
        env = svcs[comp].get("environment", {})
        keys = set(env) if isinstance(env, dict) else {e.split("=")[0] for e in env}
        bad = sorted(keys - allowed)
        if bad:
            problems.append(f"{comp}: env names not in the contract: {bad}")
        if comp == "loadgen" and "INSTANCE_ID" in keys:
            problems.append("loadgen: INSTANCE_ID must stay unset (hostname default is unique per container)")
    env = svcs["loadgen"]["environment"]
    if str(env.get("VIRTUAL_CLIENTS")) != "100000":
        problems.append("loadgen: VIRTUAL_CLIENTS must default to 100000")
    if not str(env.get("BROKER", "")).startswith("mqtt://emqx:1883"):
        problems.append("loadgen: BROKER must default to mqtt://emqx:1883")
    if not str(svcs["worker"]["environment"].get("BROKER", "")).startswith("mqtt://emqx:1883"):
        problems.append("worker: BROKER must default to mqtt://emqx:1883")
    if not str(svcs["emqx"]["image"]).startswith("emqx/emqx:5.8."):
        problems.append("emqx image must be emqx/emqx:5.8.x")
    for p in ("prometheus", "grafana"):
        if "monitoring" not in svcs[p].get("profiles", []):
            problems.append(f"{p}: must be in profile 'monitoring'")
    emqx_env = {}
    for ef in svcs["emqx"].get("env_file", []):
        for line in open(os.path.join(ROOT, ef)):
            line = line.strip()
            if line and not line.startswith("#"):
                k, _, v = line.partition("=")
                emqx_env[k] = v
    emqx_env.update(svcs["emqx"].get("environment", {}))
    for k in emqx_env:
        if not re.fullmatch(r"EMQX_[A-Z0-9]+(_{1,2}[A-Z0-9]+)*", k):
            problems.append(f"emqx: bad env name {k}")
    if not emqx_env.get("EMQX_LISTENERS__WS__DEFAULT__BIND", "").endswith(":8083"):
        problems.append("emqx: WebSocket listener must bind :8083")
    if emqx_env.get("EMQX_LISTENERS__WS__DEFAULT__WEBSOCKET__MQTT_PATH") != "/mqtt":
        problems.append("emqx: WebSocket path must be /mqtt")
    need(not problems, "\n".join(problems))
    print(f"{len(svcs)} services; all mounted paths exist")


def merged(base, over):
    """docker compose's merge of an override file into a base (mappings merge, the rest replaces)."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = merged(base[k], v) if k in base else v
        return out
    return over


def cmd_compose_nats(base, override):
    """The NATS variant (base + override): nats-server, no EMQX started, both binaries on NATS."""
    with open(base) as f:
        b = yaml.safe_load(interpolate(f.read()))
    with open(override) as f:
        o = yaml.safe_load(interpolate(f.read()))
    svcs = merged(b, o)["services"]
    problems = []
    n = svcs.get("nats") or {}
    if not re.match(r"^nats:2\.9\.\d+", str(n.get("image", ""))):
        problems.append(f"nats: image must be nats:2.9.x (Debian's is 2.9), is {n.get('image')}")
    if "healthcheck" not in n:
        problems.append("nats: needs a healthcheck (/healthz)")
    if "emqx" not in svcs["emqx"].get("profiles", []):
        problems.append("emqx: must move to profile 'emqx' (not started by default)")
    for comp, allowed in (("loadgen", LOADGEN_ENV), ("worker", WORKER_ENV)):
        s = svcs[comp]
        if not str(s["environment"].get("BROKER", "")).startswith("nats://nats:4222"):
            problems.append(f"{comp}: BROKER must default to nats://nats:4222")
        bad = sorted(set(o["services"][comp].get("environment", {})) - allowed)
        if bad:
            problems.append(f"{comp}: env names not in the contract: {bad}")
        deps = s.get("depends_on", {})
        if deps.get("nats", {}).get("condition") != "service_healthy":
            problems.append(f"{comp}: must wait for nats to be healthy")
        if "emqx" in deps and deps["emqx"].get("required") is not False:
            problems.append(f"{comp}: its dependency on emqx must be required: false")
    need(not problems, "\n".join(problems))
    print(f"{len(svcs)} services; nats {n['image']}; emqx only with --profile emqx")


# ---- Dockerfiles -------------------------------------------------------------------
def cmd_dockerfile(path, binary, port):
    import dockerfile
    cmds = dockerfile.parse_file(path)
    froms = [c for c in cmds if c.cmd.lower() == "from"]
    need(len(froms) >= 2, "must be multi-stage")
    need(froms[0].value[0].startswith("rust:1.95-slim-bookworm"), f"builder must be rust:1.95-slim-bookworm, is {froms[0].value[0]}")
    need(froms[-1].value[0] == "debian:bookworm-slim", "runtime must be debian:bookworm-slim")
    runs = " ".join(" ".join(c.value) for c in cmds if c.cmd.lower() == "run")
    need(re.search(r"cargo build --release.*-p loadgen.*-p worker", runs), "builder must cargo build --release -p loadgen -p worker")
    need("ca-certificates" in runs, "runtime must install ca-certificates")
    last = max(i for i, c in enumerate(cmds) if c.cmd.lower() == "from")
    final = cmds[last:]
    users = [c.value[0] for c in final if c.cmd.lower() == "user"]
    need(users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0", "runtime USER must be a numeric non-root uid")
    expose = [v for c in final if c.cmd.lower() == "expose" for v in c.value]
    need(str(port) in expose, f"must EXPOSE {port}")
    need(not any(c.cmd.lower() == "healthcheck" for c in cmds), "no HEALTHCHECK (probes live in k8s/compose)")
    ep = [c for c in final if c.cmd.lower() == "entrypoint"]
    need(ep and binary in " ".join(ep[-1].value), f"ENTRYPOINT must run {binary}")
    copies = [c for c in final if c.cmd.lower() == "copy" and any(f.startswith("--from") for f in c.flags)]
    need(any(f"/{binary}" in c.value[0] for c in copies), f"runtime must COPY the {binary} binary from the builder")
    ign = path + ".dockerignore"
    need(os.path.isfile(ign) and "target" in open(ign).read().split(), f"{ign} must exclude target/")


# ---- metrics / PromQL ------------------------------------------------------------------
def contract_metrics():
    names, types = set(), {}
    for line in open("monitoring/metric-names.txt"):
        line = line.split("#")[0].strip()
        if line:
            n, t = line.split()
            names.add(n)
            types[n] = t
    return names, types


METRIC_RE = re.compile(r"(?<![:\w])((?:loadgen|worker|fanout)_[a-z0-9_]+)\b")


def bad_metrics(expr):
    names, types = contract_metrics()
    bad = []
    for m in METRIC_RE.findall(expr):
        base = re.sub(r"_(bucket|sum|count)$", "", m)
        if m in names:
            continue
        if base in names and types[base] == "histogram":
            continue
        bad.append(m)
    return bad


def cmd_contract_sync(contract):
    names, _ = contract_metrics()
    text = open(contract).read()
    sect = text.split("## Metric names", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"`((?:loadgen|worker|fanout)_[a-z0-9_]+)(?:\{[^`]*\})?`", sect))
    # Later sections add metrics in sentences like "Metrics gain `loadgen_active_clients`."
    for gain in re.findall(r"[Mm]etrics gain ([^.\n]*(?:\n[^.\n]*)?)", text):
        listed |= set(re.findall(r"`((?:loadgen|worker|fanout)_[a-z0-9_]+)`", gain))
    need(listed, "no metric names found in CONTRACT.md")
    need(listed == names, f"metric-names.txt vs CONTRACT.md: missing {sorted(listed - names)}, extra {sorted(names - listed)}")
    print(f"{len(names)} metric names match {contract}")


def grafana_exprs(path):
    d = json.load(open(path))
    out = []

    def walk(panels):
        for p in panels:
            for t in p.get("targets", []):
                out.append((p.get("title", "?"), t.get("expr", "")))
            walk(p.get("panels", []))
    walk(d.get("panels", []))
    return d, out


def cmd_grafana(path, rules_out):
    d, exprs = grafana_exprs(path)
    need(d.get("uid") and d.get("title"), "dashboard needs uid and title")
    need(len(exprs) >= 10, "dashboard has too few queries")
    problems = []
    ds_uids = set()

    def walk(panels):
        for p in panels:
            if p.get("type") != "row":
                ds = p.get("datasource") or {}
                ds_uids.add(ds.get("uid"))
                if not p.get("targets"):
                    problems.append(f"panel {p.get('title')!r} has no query")
            walk(p.get("panels", []))
    walk(d["panels"])
    prov = yaml.safe_load(open("monitoring/grafana/provisioning/datasources/prometheus.yml"))
    uids = {x["uid"] for x in prov["datasources"]}
    if not ds_uids <= uids:
        problems.append(f"panel datasource uids {ds_uids} not provisioned ({uids})")
    rules = []
    for i, (title, e) in enumerate(exprs):
        if not e.strip():
            problems.append(f"panel {title!r}: empty expr")
            continue
        if not METRIC_RE.search(e):
            problems.append(f"panel {title!r}: uses no contract metric: {e}")
        for b in bad_metrics(e):
            problems.append(f"panel {title!r}: metric {b} is not in the contract")
        rules.append({"record": f"grafana:check:{i}", "expr": e.replace("$__rate_interval", "1m")
                      .replace("$__interval", "1m").replace("$__range", "5m")})
    yaml.safe_dump({"groups": [{"name": "grafana-queries", "rules": rules}]}, open(rules_out, "w"))
    need(not problems, "\n".join(problems))
    print(f"{len(exprs)} queries, all metrics from the contract")


def cmd_rules_metrics():
    problems, recorded, used = [], set(), set()
    for f in sorted(glob.glob("monitoring/rules/*.yml")):
        for g in yaml.safe_load(open(f))["groups"]:
            for r in g["rules"]:
                if "record" in r:
                    recorded.add(r["record"])
                used.update(re.findall(r"\b(mqtt_rr:[a-z0-9_:]+)", r["expr"]))
                for b in bad_metrics(r["expr"]):
                    problems.append(f"{f}: {r.get('record') or r.get('alert')}: {b} not in the contract")
    for u in sorted(used - recorded):
        problems.append(f"recording rule {u} is used but never recorded")
    for want in ("mqtt_rr:match_rate:ratio_rate1m", "mqtt_rr:latency_p99:seconds_rate1m",
                 "mqtt_rr:latency_p50:seconds_rate1m", "mqtt_rr:match_rate:ratio_rate15s",
                 "mqtt_rr:latency_p99:seconds_rate15s"):
        if want not in recorded:
            problems.append(f"recording rule {want} missing")
    need(not problems, "\n".join(problems))
    print(f"{len(recorded)} recorded series")


# ---- web dashboard -------------------------------------------------------------------
def cmd_web_dashboard(path):
    html = open(path).read()
    problems = []
    if re.search(r"<script[^>]+src=", html, re.I):
        problems.append("external <script src>")
    if re.search(r"<link\b", html, re.I):
        problems.append("<link> element (must be self-contained)")
    if re.search(r"@import|url\(\s*['\"]?https?:", html):
        problems.append("CSS import/url() to the network")
    for m in re.findall(r"""(?:fetch|XMLHttpRequest|src=|href=)\s*\(?\s*['"]([^'"]+)""", html):
        if re.match(r"^(https?:)?//", m):
            problems.append(f"external reference {m}")
    if not re.search(r"fetch\(\s*['\"]/?stats['\"]", html):
        problems.append("must fetch stats from the same origin")
    for i in ("chart-rate", "chart-match", "chart-latency", "chart-timeouts", "chart-worker",
              "v-offered-rate", "v-achieved-rate", "v-match-rate", "v-p50", "v-p99", "v-timeouts",
              "v-pool-size"):
        if f'id="{i}"' not in html:
            problems.append(f"missing element id {i}")
    if html.count('data-points="0"') < 5:
        problems.append("charts must carry data-points")
    # /stats is read only through get(s, "path") / fan(s, "path"): loadgen/tests/observe.rs
    # checks those paths against a live /stats
    script = html.split("<script>", 1)[-1].split("</script>", 1)[0]
    for m in re.finditer(r"(?<![\w$.])s[.\[]", script):
        line = script[:m.start()].count("\n") + 1
        problems.append(f"script line {line}: reads the /stats snapshot directly; use get(s, \"path\")")
    if len(re.findall(r'\bget\(s, "[\w.]+"\)', script)) < 20:
        problems.append("script reads /stats through get(s, \"path\") (too few found)")
    need(not problems, "\n".join(problems))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    try:
        globals()["cmd_" + cmd.replace("-", "_")](*args)
    except Fail as e:
        print(e)
        sys.exit(1)
PYEOF
pyc() { "$PY" "$TMP/checks.py" "$@"; }

# ---------------------------------------------------------------------------
# Kubernetes
# ---------------------------------------------------------------------------
render() { "$KUBECTL" kustomize "$1" > "$2"; }
kval() {
  local f=$1 v
  for v in $K8S_SCHEMA_VERSIONS; do
    "$VENV/bin/kubernetes-validate" --strict --quiet -k "$v" "$f" || return 1
  done
  grep -q '^kind:' "$f"
}
for target in k8s/base k8s/overlays/kind k8s/overlays/1m k8s/overlays/nats monitoring; do
  out="$TMP/$(echo "$target" | tr / _).yaml"
  check "kustomize build $target" render "$target" "$out"
  check "k8s schemas ($K8S_SCHEMA_VERSIONS, strict): $target" kval "$out"
done
check "k8s kind overlay: 1 loadgen pod x 10,000 virtual clients, probes, env, HPA, EMQX discovery" \
  pyc k8s-kind "$TMP/k8s_overlays_kind.yaml"
check "k8s 1m overlay: 10 pods x 100,000 = 1,000,000 virtual clients, unique INSTANCE_ID from pod name" \
  pyc k8s-1m "$TMP/k8s_overlays_1m.yaml"
check "k8s nats overlay: nats-server instead of EMQX, worker and loadgen on nats://nats:4222" \
  pyc k8s-nats "$TMP/k8s_overlays_nats.yaml"
check "k8s monitoring: Prometheus + Grafana from monitoring/ files" \
  pyc k8s-monitoring "$TMP/monitoring.yaml"

# ---------------------------------------------------------------------------
# docker compose + Dockerfiles
# ---------------------------------------------------------------------------
check "docker-compose.yml against the Compose Specification schema" \
  "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.yml
check "docker-compose.yml with defaults interpolated against the schema" \
  bash -c "'$PY' '$TMP/checks.py' compose-interpolate docker-compose.yml '$TMP/compose.json' && \
           '$VENV/bin/check-jsonschema' --builtin-schema vendor.compose-spec '$TMP/compose.json'"
check "docker-compose.yml: mounted paths, env_file, builds, contract env names" \
  pyc compose-semantics docker-compose.yml
check "docker-compose.nats.yml against the Compose Specification schema" \
  "$VENV/bin/check-jsonschema" --builtin-schema vendor.compose-spec docker-compose.nats.yml
check "docker-compose.nats.yml with defaults interpolated against the schema" \
  bash -c "'$PY' '$TMP/checks.py' compose-interpolate docker-compose.nats.yml '$TMP/compose-nats.json' && \
           '$VENV/bin/check-jsonschema' --builtin-schema vendor.compose-spec '$TMP/compose-nats.json'"
check "docker-compose.nats.yml: nats-server instead of EMQX, worker and loadgen on nats://nats:4222" \
  pyc compose-nats docker-compose.yml docker-compose.nats.yml
check "docker/Dockerfile.loadgen" pyc dockerfile docker/Dockerfile.loadgen loadgen 8090
check "docker/Dockerfile.worker" pyc dockerfile docker/Dockerfile.worker worker 8080

# ---------------------------------------------------------------------------
# Prometheus, rules, Grafana, metric names
# ---------------------------------------------------------------------------
check "promtool check config monitoring/prometheus.yml (compose)" promtool check config monitoring/prometheus.yml
check "promtool check config monitoring/k8s/prometheus.yml (k8s)" promtool check config monitoring/k8s/prometheus.yml
check "promtool check rules monitoring/rules/*.yml" promtool check rules monitoring/rules/*.yml
check "recording rules use only contract metrics and define the required series" pyc rules-metrics
check "Grafana dashboard: JSON, datasource, contract metrics only" \
  pyc grafana monitoring/grafana/dashboards/mqtt-rr-bench.json "$TMP/grafana-rules.yml"
check "Grafana dashboard queries are valid PromQL (promtool)" promtool check rules "$TMP/grafana-rules.yml"
CONTRACT=""
for c in "$ROOT/../shared/CONTRACT.md" "$ROOT/shared/CONTRACT.md" "${CONTRACT_MD:-}"; do
  if [ -n "$c" ] && [ -f "$c" ]; then CONTRACT=$c; break; fi
done
if [ -n "$CONTRACT" ]; then
  check "monitoring/metric-names.txt matches CONTRACT.md" pyc contract-sync "$CONTRACT"
fi

# ---------------------------------------------------------------------------
# Dashboards and shell
# ---------------------------------------------------------------------------
check "web dashboard is self-contained and exposes chart/value ids" pyc web-dashboard loadgen/src/web/dashboard.html
check "shell syntax (bash -n) of scripts" bash -c 'for f in scripts/*.sh; do bash -n "$f" || exit 1; done'

dashboard_snapshot() {
  local port
  port=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  mkdir -p "$TMP/www"
  cat > "$TMP/www/stats" <<'JSON'
{"scenario":"rr","instance_id":"h1","phase":"running","elapsed_s":12.3,"measured_s":7.3,
 "offered_rate":5000.0,"achieved_rate":4998.2,"virtual_clients":10000,"connections":20,"inflight":12,
 "sent":36500,"matched":36490,"timeouts":2,"late":0,"duplicates":0,"invalid":0,"skipped":0,"publish_errors":0,"reconnects":0,
 "match_rate":0.9997,"latency_us":{"min":90,"mean":950.0,"p50":800,"p90":1500,"p99":2500,"p999":4000,"max":9000},
 "recent":{"window_s":1.0,"sent_per_s":5000.0,"matched_per_s":4999.0,"timeouts_per_s":0.0,"p50_us":800,"p99_us":2500},
 "schedule_lag_us":{"p99":300,"max":1200},"worker":{"pool_size":10,"busy_workers":2,"queue_depth":0}}
JSON
  "$PY" -m http.server "$port" --bind 127.0.0.1 --directory "$TMP/www" >/dev/null 2>&1 &
  FAKE_PID=$!
  local i
  for i in $(seq 50); do
    curl -fsS -o /dev/null "http://127.0.0.1:$port/stats" 2>/dev/null && break
    sleep 0.1
  done
  local out
  out=$(STATS_URL="http://127.0.0.1:$port/stats" bash scripts/dashboard.sh --once 2>&1)
  kill "$FAKE_PID" 2>/dev/null; wait "$FAKE_PID" 2>/dev/null; FAKE_PID=""
  printf '%s\n' "$out"
  grep -q '99.97' <<<"$out" && grep -q 'pool' <<<"$out" && grep -q '5,000\|5000' <<<"$out"
}
if command -v curl >/dev/null 2>&1; then
  check "scripts/dashboard.sh --once renders a /stats snapshot" dashboard_snapshot
fi

make_dry_run() {
  local t
  for t in compose-up compose-down k8s-build k8s-deploy-kind k8s-deploy-1m k8s-status k8s-logs \
           k8s-cleanup k8s-monitoring dashboard validate-deploy; do
    make --no-print-directory -n -f mk/deploy.mk "$t" >/dev/null || { echo "make -n $t failed"; return 1; }
  done
}
check "mk/deploy.mk targets parse (make -n)" make_dry_run

echo "$PASS passed, $FAIL failed"
[ "$FAIL" -eq 0 ]
