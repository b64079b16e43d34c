package main

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"
)

// result is one measurement of one target, as JSON.
type result struct {
	Name       string             `json:"name"` // direct, mosquitto-tls, haproxy, mqttgate
	Test       string             `json:"test"` // qos0-64, qos0-16k, latency, hs-ecdsa, hs-resume, hs-rsa, idle, aesgcm
	Repeat     int                `json:"repeat"`
	When       time.Time          `json:"when"`
	CPUSeconds float64            `json:"cpu_seconds"` // the target process's, during the test
	Load       *loadResult        `json:"load,omitempty"`
	Handshake  *handshakeResult   `json:"handshake,omitempty"`
	Idle       *idleResult        `json:"idle,omitempty"`
	Extra      map[string]float64 `json:"extra,omitempty"`
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: bench load|handshake|idle|aesgcm|report ... (see doc.go)")
		os.Exit(2)
	}
	var err error
	if os.Args[1] == "report" {
		err = report(os.Args[2:], os.Stdout)
	} else {
		err = measure(os.Args[1], os.Args[2:])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "\nbench: %v\n", err)
		os.Exit(1)
	}
}

func measure(cmd string, args []string) error {
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	name := fs.String("name", "", "target name for the report (direct, mosquitto-tls, haproxy, mqttgate)")
	test := fs.String("test", cmd, "test name for the report")
	repeat := fs.Int("repeat", 0, "repeat number")
	out := fs.String("out", "", "write the JSON result here (default stdout)")
	pid := fs.Int("pid", 0, "the target process, for CPU time and memory")
	raw := fs.String("target", "", "tls://host:port or tcp://host:port")
	ca := fs.String("ca", "", "CA certificate for tls targets")
	user := fs.String("user", "", "MQTT user name")
	pass := fs.String("pass", "", "MQTT password")
	pubs := fs.Int("publishers", 4, "publishing connections")
	subs := fs.Int("subscribers", 4, "subscribing connections (publisher i sends to subscriber i mod n)")
	qos := fs.Int("qos", 0, "0 or 1")
	size := fs.Int("size", 64, "payload bytes")
	dur := fs.Duration("duration", 10*time.Second, "how long to publish")
	rate := fs.Float64("rate", 0, "open-loop messages per second in all (0: as fast as possible)")
	n := fs.Int("n", 1000, "handshakes, or idle connections")
	parallel := fs.Int("parallel", 8, "concurrent handshakes")
	resume := fs.Bool("resume", false, "resume TLS sessions")
	groups := fs.String("groups", "classic", "TLS key exchange groups offered: classic (X25519, P-256: what OpenSSL 3.0 has) or go (Go's defaults, X25519MLKEM768 first)")
	_ = fs.Parse(args)

	res := &result{Name: *name, Test: *test, Repeat: *repeat, When: time.Now().UTC()}
	if cmd == "aesgcm" {
		res.Extra = map[string]float64{"open_bytes_per_sec": aesGCMOpenRate()}
		return writeResult(res, *out)
	}
	t, err := parseTarget(*raw, *ca, *user, *pass, *groups)
	if err != nil {
		return err
	}
	var before procSample
	if *pid > 0 {
		if before, err = sampleProc(*pid); err != nil {
			return err
		}
	}
	switch cmd {
	case "load":
		res.Load, err = runLoad(t, loadOpts{publishers: *pubs, subscribers: *subs, qos: byte(*qos), size: *size, duration: *dur, rate: *rate}, progressLine)
	case "handshake":
		res.Handshake, err = runHandshakes(t, *n, *parallel, *resume)
	case "idle":
		if *pid == 0 {
			return errors.New("idle needs -pid")
		}
		res.Idle, err = runIdle(t, *n, *pid, progressLine)
	default:
		return fmt.Errorf("unknown command %q", cmd)
	}
	if err != nil {
		return err
	}
	if *pid > 0 {
		after, err := sampleProc(*pid)
		if err != nil {
			return err
		}
		res.CPUSeconds = procDelta(before, after).CPUSeconds
	}
	fmt.Fprintln(os.Stderr)
	return writeResult(res, *out)
}

func writeResult(r *result, out string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if out == "" {
		_, err = os.Stdout.Write(append(b, '\n'))
		return err
	}
	return os.WriteFile(out, append(b, '\n'), 0o644)
}

// aesGCMOpenRate is how many bytes per second one core decrypts with
// AES-128-GCM in 16 KiB records: the floor of any TLS proxy's cost.
func aesGCMOpenRate() float64 {
	block, _ := aes.NewCipher(make([]byte, 16))
	aead, _ := cipher.NewGCM(block)
	nonce := make([]byte, aead.NonceSize())
	sealed := aead.Seal(nil, nonce, make([]byte, 16<<10), nil)
	buf := make([]byte, 0, 16<<10)
	start := time.Now()
	var n int
	for time.Since(start) < time.Second {
		for range 64 {
			if _, err := aead.Open(buf[:0], nonce, sealed, nil); err != nil {
				panic(err)
			}
			n += 16 << 10
		}
	}
	return float64(n) / time.Since(start).Seconds()
}
