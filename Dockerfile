# Build a static binary, then ship it alone in a small non-root image.
# The Go version is go.mod's, exactly (a test checks they agree).
FROM golang:1.26.8 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/storeflow ./cmd/storeflow

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/storeflow /usr/local/bin/storeflow
# Inside a container the listeners must face the container's network; publish
# the ports on the host's loopback unless you mean to expose them. The demo
# image lets anonymous MQTT clients in (on those published ports only); for
# anything more, mount a BROKER_AUTH_FILE and set BROKER_ALLOW_ANONYMOUS=false.
ENV BROKER_LISTEN_ADDR=0.0.0.0:1883 \
    BROKER_TLS_LISTEN_ADDR=0.0.0.0:8883 \
    BROKER_ALLOW_ANONYMOUS=true \
    HTTP_ADDR=0.0.0.0:8000
EXPOSE 1883 8883 8000
USER nonroot:nonroot
# The image has no shell and no curl: the binary asks its own /readyz
# (HTTP_ADDR; 0.0.0.0 is reached on 127.0.0.1). The start trains the demo's
# model, a few seconds.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/storeflow", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/storeflow"]
