package main

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqttgate/mqttgate/mqttwire/mqtttest"
)

// browserPage is the page the browser test serves: MQTT.js (its browser
// build) connects over wss to the gate, subscribes, and reports in the
// page's title.
const browserPage = `<!doctype html><title>loading</title><script src="/mqtt.min.js"></script><script>
const c = mqtt.connect("wss://localhost:%s/mqtt", {protocolVersion: 5, clientId: "browser-" + Math.random().toString(16).slice(2),
  reconnectPeriod: 0, connectTimeout: 5000});
c.on("connect", () => c.subscribe("browser/news", {qos: 1}, (err) => { document.title = err ? "error:subscribe" : "subscribed"; }));
c.on("message", (t, p) => { document.title = "got:" + t + ":" + p; });
c.on("error", (e) => { document.title = "error:" + e.message; });
c.on("close", () => { if (!document.title.startsWith("got")) document.title = "closed"; });
</script>`

// servePage serves the page (and MQTT.js) on a loopback port of its own:
// its address is the page's Origin.
func servePage(t *testing.T, gatePort string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mqttjs := filepath.Join(npmPackages(t, filepath.Join("..", "..", "testdata", "clients", "mqttjs"), "mqtt"), "node_modules", "mqtt", "dist", "mqtt.min.js")
	mux := http.NewServeMux()
	mux.HandleFunc("/mqtt.min.js", func(w http.ResponseWriter, r *http.Request) { http.ServeFile(w, r, mqttjs) })
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, browserPage, gatePort)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

// Issue 15: a page opened in headless Chromium connects with MQTT.js over
// wss through mqttgate (the server certificate, from the test CA, trusted
// by its key), subscribes, and receives what mosquitto_pub sent to the
// broker; the same page from an Origin not listed is refused at the
// upgrade.
func TestBrowserOverWSS(t *testing.T) {
	mqtttest.Need(t, "chromium")
	node := mqtttest.Need(t, "node")
	backend := mqtttest.Mosquitto(t, "")
	wss := mqtttest.FreeAddr(t)
	_, gatePort, _ := net.SplitHostPort(wss)
	good, bad := servePage(t, gatePort), servePage(t, gatePort)
	g := startGate(t, backend, "MQTTGATE_LISTEN_WSS="+wss, "MQTTGATE_WS_ORIGINS="+good)
	mqtttest.WaitListening(t, wss)
	spki := sha256.Sum256(mqtttest.CertOf(t, g.pki.ServerCert).RawSubjectPublicKeyInfo)

	cmd := exec.Command(node, "browser.mjs", good+"/", bad+"/", base64.StdEncoding.EncodeToString(spki[:]))
	cmd.Dir = npmPackages(t, filepath.Join("..", "..", "testdata", "clients", "browser"), "playwright-core")
	out := mqtttest.Start(t, "chromium driver", cmd)
	// next waits for the driver's n-th line (bounded: the driver gives up
	// after 15 s a step, and says so).
	next := func(n int, what string) string {
		t.Helper()
		var line string
		mqtttest.WaitFor(t, what+" in the browser", func() bool {
			ls := strings.Split(strings.TrimSpace(out.String()), "\n")
			switch last := ls[len(ls)-1]; {
			case len(ls) >= n && ls[n-1] != "":
				line = ls[n-1]
			case strings.HasPrefix(last, "error"):
				line = last // the driver gave up
			default:
				return false
			}
			return true
		})
		t.Logf("browser: %s", line)
		return line
	}
	if l := next(1, "the subscription"); l != "subscribed" {
		t.Fatalf("the page: %q", l)
	}
	_, port, _ := net.SplitHostPort(backend)
	if err := exec.Command(mqtttest.Need(t, "mosquitto_pub"), "-h", "127.0.0.1", "-p", port, "-t", "browser/news", "-m", "hello-browser", "-q", "1").Run(); err != nil {
		t.Fatal(err)
	}
	if l := next(2, "the message"); l != "got:browser/news:hello-browser" {
		t.Fatalf("the page: %q", l)
	}
	if l := next(3, "the other origin"); !strings.HasPrefix(l, "other origin: ") || strings.Contains(l, "subscribed") || strings.Contains(l, "got:") {
		t.Fatalf("the page from an Origin not listed: %q", l)
	}
	g.waitLog(t, "origin not allowed")
}
