// Command bench drives MQTT brokers and proxies from outside, like a user:
// TLS or plain TCP clients built on mqttwire publish and subscribe on
// loopback, and it reports throughput, end-to-end latency (HDR histogram),
// TLS handshakes per second, memory per idle connection and each target
// process's CPU time from /proc, as JSON, a ratio table and an SVG chart.
// run.sh runs the whole comparison (Mosquitto direct and with its own
// TLS, HAProxy, mqttgate). TLS clients offer X25519 and P-256, which every
// target can negotiate; -groups go offers Go's defaults (X25519MLKEM768
// first).
//
//	bench load      -target tls://127.0.0.1:8883 -ca ca.pem -publishers 4 -size 64 -duration 10s -pid 1234 -name mqttgate -out r.json
//	bench handshake -target tls://127.0.0.1:8883 -ca ca.pem -n 2000 [-resume] [-groups go] -pid 1234 ...
//	bench idle      -target tls://127.0.0.1:8883 -ca ca.pem -n 5000 -pid 1234 ...
//	bench report    results/*.json   (prints the ratio table, writes results/chart.svg)
package main
