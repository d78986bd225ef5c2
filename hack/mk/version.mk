# The version (VERSION, read by the main Makefile) where files repeat it: the
# chart's version and appVersion (its default image tag) and the installer's
# image tag. Included by the main Makefile.

# `make verify` reruns this and fails if it changed a committed file.
GENERATE_TARGETS += version-sync

##@ Release

.PHONY: version-sync
version-sync: ## Set Chart.yaml's version/appVersion and the installer's image tag from VERSION.
	$(GO) run ./hack/version -chart $(CHART_DIR)/Chart.yaml -kustomization config/manager/kustomization.yaml VERSION
