# The demo (`make demo`, hack/demo): the operator, the Cloudflare simulator and
# a local control plane on this machine. The `demo` target itself is in the
# main Makefile; this file holds its knobs and helpers. Included by the main
# Makefile.

# Flags for hack/demo, e.g. DEMO_ARGS=-dir=/tmp/demo to keep the kubeconfig,
# logs and binaries after exit (default: a temporary directory, removed).
DEMO_ARGS ?=

##@ Demo

.PHONY: demo-ci
demo-ci: ## Run every demo step without waiting for Ctrl-C (as CI=true make demo does).
	@$(MAKE) --no-print-directory demo CI=true

.PHONY: test-e2e
test-e2e: envtest chart-tools ## Run the end-to-end tests (test/e2e: Helm chart and installer on a real control plane).
	KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" $(GO) test ./test/e2e/ -count=1 -v $(TEST_ARGS)
