# Multi-stage build: a static mqttgate binary in a minimal image, run as a
# non-root user. Mount certificates read-only and configure with MQTTGATE_*.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/mqttgate ./cmd/mqttgate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mqttgate /usr/local/bin/mqttgate
USER nonroot:nonroot
EXPOSE 8883
ENTRYPOINT ["/usr/local/bin/mqttgate"]
CMD ["run"]
