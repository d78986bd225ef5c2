# Packaging: the kustomize installer (dist/install.yaml) and the Helm chart
# (charts/servicetoken-operator). Included by the main Makefile.

HELM_VERSION ?= v3.22.0
# Helm's release build stamps its version and the Kubernetes version it targets
# (from its client-go, v0.37 for v3.22) with -X; `go install` alone would leave
# Kubernetes at v1.20, failing charts that declare a kubeVersion.
HELM_K8S_MINOR ?= 37
HELM_LDFLAGS := -s -w -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	-X helm.sh/helm/v3/internal/version.metadata= \
	-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$(HELM_K8S_MINOR) \
	-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$(HELM_K8S_MINOR)
# v5.8.3 needs Go 1.27; v5.8.2 is the newest that builds with Go 1.26.
KUSTOMIZE_VERSION ?= v5.8.2
HELM ?= $(LOCALBIN)/helm-$(HELM_VERSION)
KUSTOMIZE ?= $(LOCALBIN)/kustomize-$(KUSTOMIZE_VERSION)

CHART_DIR ?= charts/servicetoken-operator
# The OCI repository `make chart-push` pushes to.
CHART_REPO ?= oci://ghcr.io/servicetoken-operator/charts
CRD_BASES := $(sort $(wildcard config/crd/bases/*.yaml))

# `make verify` reruns these and fails if they changed anything.
GENERATE_TARGETS += chart-crds chart-rbac

##@ Packaging

.PHONY: build-installer
build-installer: manifests kustomize ## Render config/default into dist/install.yaml (IMG=... sets the image).
	@mkdir -p dist
	@rm -rf dist/.installer && mkdir -p dist/.installer && cp -r config dist/.installer/
	@# The image is set on a copy of config/ so the tree stays unchanged.
	cd dist/.installer/config/manager && $(KUSTOMIZE) edit set image controller=$(IMG)
	$(KUSTOMIZE) build dist/.installer/config/default > dist/install.yaml
	@rm -rf dist/.installer
	@echo "wrote dist/install.yaml (image $(IMG))"

.PHONY: chart-generate
chart-generate: chart-crds chart-rbac ## Regenerate the chart's CRDs and RBAC rules from config/.

.PHONY: chart-crds
chart-crds: ## Copy config/crd/bases into the chart's templates/crds (templated, keep policy).
	$(GO) run ./hack/chart crds -out $(CHART_DIR)/templates/crds $(CRD_BASES)

.PHONY: chart-rbac
chart-rbac: ## Write the manager's RBAC rules from config/rbac/role.yaml into the chart.
	$(GO) run ./hack/chart rbac -role config/rbac/role.yaml -out $(CHART_DIR)/templates/_rules.tpl $(CRD_BASES)

.PHONY: chart-lint
chart-lint: helm ## Run helm lint on the chart.
	$(HELM) lint --strict $(CHART_DIR)

.PHONY: chart-package
chart-package: helm chart-generate ## Package the chart into dist/.
	@mkdir -p dist
	$(HELM) package $(CHART_DIR) -d dist

.PHONY: chart-push
chart-push: chart-package ## Push the packaged chart to CHART_REPO (credentials: helm registry login or docker login).
	$(HELM) push dist/servicetoken-operator-$(VERSION).tgz $(CHART_REPO)

.PHONY: chart-test
chart-test: chart-tools ## Run the chart and installer tests (test/chart).
	$(GO) test ./test/chart/ -count=1 $(TEST_ARGS)

# test/chart finds helm and kustomize in bin/ (skipping without them, failing
# under CI=true), so `make test` needs this as a prerequisite too.
.PHONY: chart-tools
chart-tools: helm kustomize ## Install the tools the chart tests use (helm, kustomize) into bin/.

.PHONY: helm
helm: $(HELM)
$(HELM): | $(LOCALBIN)
	GOBIN=$(LOCALBIN)/.tmp-helm $(GO) install -ldflags '$(HELM_LDFLAGS)' helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(LOCALBIN)/.tmp-helm/helm $@ && rm -rf $(LOCALBIN)/.tmp-helm

.PHONY: kustomize
kustomize: $(KUSTOMIZE)
$(KUSTOMIZE): | $(LOCALBIN)
	GOBIN=$(LOCALBIN)/.tmp-kustomize $(GO) install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	mv $(LOCALBIN)/.tmp-kustomize/kustomize $@ && rm -rf $(LOCALBIN)/.tmp-kustomize
