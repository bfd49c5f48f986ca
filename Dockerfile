# syntax=docker/dockerfile:1
# The operator image: one static binary, /manager, that runs the controllers
# (`manager`, the default) and the actions of upgrade Jobs (`executor <action>`).

# Build stage. The Go version matches go.mod.
FROM --platform=$BUILDPLATFORM golang:1.26 AS builder
ARG TARGETOS=linux
ARG TARGETARCH
WORKDIR /workspace

# Dependencies first, in their own layer, so that a code change does not
# download them again.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download

# .dockerignore admits only the Go sources of the binary.
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags='-s -w' -o /out/manager .

# Runtime stage: distroless "static" holds CA certificates, tzdata and a
# passwd entry for the unprivileged user 65532, and no shell or package manager.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=builder /out/manager /manager
# Numeric, so that Kubernetes can verify runAsNonRoot without a passwd lookup.
USER 65532:65532
ENTRYPOINT ["/manager"]
