# The manager's image, for those with Docker. `make image` builds the same
# image without a container engine (hack/image): an empty base with the static
# manager and a CA bundle, user 65532:65532 (nonroot), the same entrypoint and
# OCI labels; a test in hack/image compares this file with that builder.
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION="$(cat VERSION)" --build-arg REVISION="$(git rev-parse HEAD)" \
#     -t ghcr.io/you/servicetoken-operator:"$(cat VERSION)" --push .
#
# The builder image is pinned by version tag; pin its digest where images are published.
FROM --platform=$BUILDPLATFORM golang:1.26.8-bookworm AS builder
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION
ARG REVISION
WORKDIR /workspace
COPY go.mod go.sum ./
RUN go mod download
COPY VERSION VERSION
COPY api/ api/
COPY cmd/ cmd/
COPY internal/ internal/
COPY hack/image/ hack/image/
# The same build as `make build` (CGO off, -trimpath, stripped, version stamped);
# without --build-arg VERSION the VERSION file gives it.
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -buildvcs=false -trimpath \
    -ldflags="-s -w -X github.com/servicetoken-operator/servicetoken-operator/internal/version.Version=${VERSION:-$(cat VERSION)} -X github.com/servicetoken-operator/servicetoken-operator/internal/version.Revision=${REVISION}" \
    -o manager ./cmd
# The CA bundle `make image` ships (Mozilla's roots, pinned in go.mod), not the builder's.
RUN go run ./hack/image -write-certs ca-certificates.crt

FROM scratch
ARG VERSION
ARG REVISION
LABEL org.opencontainers.image.source="https://github.com/servicetoken-operator/servicetoken-operator" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=builder /workspace/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=builder /workspace/manager /manager
WORKDIR /
USER 65532:65532
ENTRYPOINT ["/manager"]
