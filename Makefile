# servicetoken-operator. `make help` lists the targets.
# Tools are pinned here and installed into bin/ from the Go module proxy.

# The operator's version is written in one place, VERSION; `make version-sync`
# (rerun by `make verify`) copies it into the chart and the installer, and the
# binaries get it, with the git commit, at link time (internal/version).
VERSION ?= $(shell cat $(CURDIR)/VERSION)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
VERSION_PKG := github.com/servicetoken-operator/servicetoken-operator/internal/version
LDFLAGS ?= -s -w -X $(VERSION_PKG).Version=$(VERSION) -X $(VERSION_PKG).Revision=$(REVISION)
IMG ?= ghcr.io/servicetoken-operator/servicetoken-operator:$(VERSION)
LOCALBIN ?= $(CURDIR)/bin
GO ?= go
export GOFLAGS ?= -buildvcs=false

CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION ?= v2.15.0
CONTROLLER_GEN ?= $(LOCALBIN)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
GOLANGCI_LINT ?= $(LOCALBIN)/golangci-lint-$(GOLANGCI_LINT_VERSION)

# Tests run against a real kube-apiserver and etcd built from source by
# hack/setup-envtest.sh (cached in bin/k8s/); KUBEBUILDER_ASSETS set by the user wins.
TEST_ARGS ?=

# Feature areas add their targets in hack/mk/*.mk; GENERATE_TARGETS lists the
# generators (beyond CRDs, RBAC and deepcopy) that `make verify` reruns.
GENERATE_TARGETS ?=
# VERIFY_TARGETS lists the further checks (such as actionlint) `make verify` runs.
VERIFY_TARGETS ?=
-include $(sort $(wildcard hack/mk/*.mk))

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: controller-gen ## Generate CRDs and RBAC from the Go types and markers.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd paths="./api/...;./internal/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: controller-gen ## Generate DeepCopy methods.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## Run gofmt on the code.
	@gofmt -w $$(git ls-files -co --exclude-standard '*.go' | grep -v '^hack/envtest/')

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

.PHONY: lint
lint: golangci-lint ## Run golangci-lint (.golangci.yml); any finding fails.
	$(GOLANGCI_LINT) run ./...

.PHONY: envtest
envtest: ## Build kube-apiserver, etcd and kube-controller-manager for tests (cached).
	@hack/setup-envtest.sh >/dev/null

.PHONY: test
test: manifests generate fmt vet envtest chart-tools ## Run every test against a real API server.
	KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" $(GO) test ./... -count=1 $(TEST_ARGS)

.PHONY: verify
verify: manifests generate fmt $(GENERATE_TARGETS) lint $(VERIFY_TARGETS) ## Regenerate everything, lint, and fail if anything changed.
	$(GO) mod tidy
	@if [ -n "$$(git status --porcelain)" ]; then \
		echo "make verify: generated or formatted files are out of date:"; \
		git status --porcelain; git --no-pager diff --stat; exit 1; \
	fi
	@echo "make verify: clean"

##@ Build

.PHONY: build
build: ## Build the manager and the Cloudflare simulator into bin/, stamped with VERSION.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='$(LDFLAGS)' -o $(LOCALBIN)/manager ./cmd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags='$(LDFLAGS)' -o $(LOCALBIN)/cfsim ./cmd/cfsim

.PHONY: run
run: manifests generate fmt vet ## Run the manager against the cluster in ~/.kube/config.
	$(GO) run ./cmd

.PHONY: demo
demo: ## Show the operator at work on a local control plane (Ctrl-C ends it; CI=true runs through and exits).
	@hack/setup-envtest.sh >/dev/null
	@$(GO) build -o $(LOCALBIN)/demo ./hack/demo
	@$(LOCALBIN)/demo $(DEMO_ARGS)

##@ Tools

$(LOCALBIN):
	@mkdir -p $(LOCALBIN)

.PHONY: controller-gen
controller-gen: $(CONTROLLER_GEN)
$(CONTROLLER_GEN): | $(LOCALBIN)
	GOBIN=$(LOCALBIN)/.tmp-cg $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)
	mv $(LOCALBIN)/.tmp-cg/controller-gen $@ && rm -rf $(LOCALBIN)/.tmp-cg

.PHONY: golangci-lint
golangci-lint: $(GOLANGCI_LINT)
$(GOLANGCI_LINT): | $(LOCALBIN)
	GOBIN=$(LOCALBIN)/.tmp-gl $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)
	mv $(LOCALBIN)/.tmp-gl/golangci-lint $@ && rm -rf $(LOCALBIN)/.tmp-gl
