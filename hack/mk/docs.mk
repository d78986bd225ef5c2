# Documentation and GitOps integration: the API reference (docs/api.md) and the
# Argo CD resource customizations (config/argocd/; generator and tests in
# hack/argocd/). Included by the main Makefile.

# This file is included before the main Makefile's first rule: keep `make`
# with no target building, whatever rule comes first here.
.DEFAULT_GOAL := all

CRD_REF_DOCS_VERSION ?= v0.3.0
CRD_REF_DOCS ?= $(LOCALBIN)/crd-ref-docs-$(CRD_REF_DOCS_VERSION)

# `make verify` reruns these and fails if they change a committed file.
GENERATE_TARGETS += api-docs argocd-cm

##@ Documentation

.PHONY: docs
docs: api-docs argocd-cm ## Regenerate docs/api.md and config/argocd/argocd-cm.yaml.

.PHONY: api-docs
api-docs: crd-ref-docs ## Generate docs/api.md from the Go types in api/v1alpha1.
	$(CRD_REF_DOCS) --source-path=./api/v1alpha1 --config=docs/crd-ref-docs.yaml \
		--renderer=markdown --output-path=docs/api.md --log-level=ERROR

.PHONY: argocd-cm
argocd-cm: ## Generate config/argocd/argocd-cm.yaml from the Argo CD Lua scripts.
	$(GO) run ./hack/argocd/gen -dir config/argocd -out config/argocd/argocd-cm.yaml

.PHONY: test-argocd
test-argocd: ## Run the Argo CD health check and action tests (no API server needed).
	$(GO) test ./hack/argocd/... -count=1

.PHONY: crd-ref-docs
crd-ref-docs: $(CRD_REF_DOCS)
$(CRD_REF_DOCS): | $(LOCALBIN)
	GOBIN=$(LOCALBIN)/.tmp-crd $(GO) install github.com/elastic/crd-ref-docs@$(CRD_REF_DOCS_VERSION)
	mv $(LOCALBIN)/.tmp-crd/crd-ref-docs $@ && rm -rf $(LOCALBIN)/.tmp-crd
