##@ Performance

# Flags for test/bench, e.g. make bench BENCH_ARGS="--cold-n 500 --scenarios 1,6".
# Full size (Cloudflare's real budget): see docs/performance.md.
BENCH_ARGS ?=

.PHONY: bench
bench: envtest ## Run the scale and economy benchmark (scaled default, < 15 min on 2 cores); table on stdout, JSON in bench-results.json.
	KUBEBUILDER_ASSETS="$$(hack/setup-envtest.sh)" $(GO) run ./test/bench $(BENCH_ARGS)
