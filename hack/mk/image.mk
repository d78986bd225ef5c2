# Images without a container engine (hack/image, go-containerregistry) and the
# release workflow's lint. Included by the main Makefile.

# Architectures `make image` builds, each a static binary on an empty base.
IMAGE_ARCHS ?= amd64 arm64
IMAGE_TAR ?= dist/image.tar
IMAGE_SOURCE ?= https://github.com/servicetoken-operator/servicetoken-operator
# The commit's time stamps the image, so one commit gives one image digest.
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
# Set by image-push: the reference to push to.
IMAGE_PUSH ?=

ACTIONLINT_VERSION ?= v1.7.12
ACTIONLINT ?= $(LOCALBIN)/actionlint-$(ACTIONLINT_VERSION)

# `make verify` runs these checks too.
VERIFY_TARGETS += actionlint-check

##@ Image

.PHONY: image
image: ## Build the multi-arch (IMAGE_ARCHS) OCI image into dist/image.tar without Docker (IMG names it).
	@mkdir -p dist/image
	@set -e; for arch in $(IMAGE_ARCHS); do \
		echo "build manager for linux/$$arch"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags='$(LDFLAGS)' -o dist/image/manager-linux-$$arch ./cmd; \
	done
	$(GO) run ./hack/image $(foreach arch,$(IMAGE_ARCHS),-bin $(arch)=dist/image/manager-linux-$(arch)) \
		-source $(IMAGE_SOURCE) -version $(VERSION) -revision $(REVISION) -created $(SOURCE_DATE_EPOCH) \
		-ref $(IMG) -out $(IMAGE_TAR) $(if $(IMAGE_PUSH),-push $(IMAGE_PUSH) -digest-file dist/image.digest)

.PHONY: image-push
image-push: IMAGE_PUSH = $(IMG)
image-push: image ## Build the image and push it to IMG (credentials: crane auth login / docker login); digest in dist/image.digest.

.PHONY: actionlint-check
actionlint-check: actionlint ## Lint the GitHub workflows in .github/workflows with actionlint.
	$(ACTIONLINT)

.PHONY: actionlint
actionlint: $(ACTIONLINT)
$(ACTIONLINT): | $(LOCALBIN)
	GOBIN=$(LOCALBIN)/.tmp-al $(GO) install github.com/rhysd/actionlint/cmd/actionlint@$(ACTIONLINT_VERSION)
	mv $(LOCALBIN)/.tmp-al/actionlint $@ && rm -rf $(LOCALBIN)/.tmp-al
