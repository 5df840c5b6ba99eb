package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/storeflow/storeflow/broker"
)

// clockTick is USER_HZ, the unit of utime and stime in /proc/<pid>/stat:
// 100 on every Linux architecture Go runs on.
const clockTick = 10 * time.Millisecond

// processCPU is the user and system CPU time pid has used so far, from
// /proc/<pid>/stat.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, fmt.Errorf("bench: CPU of process %d: %w", pid, err)
	}
	// Fields after the command name (which may hold spaces) in parentheses:
	// state is field 3, utime 14, stime 15.
	i := bytes.LastIndexByte(b, ')')
	var f []string
	if i >= 0 {
		f = strings.Fields(string(b[i+1:]))
	}
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: CPU of process %d: unexpected /proc stat %q", pid, b)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bench: CPU of process %d: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// freeAddr returns a loopback address whose port was free just now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// syncBuffer keeps a child's output for the error that explains its end.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 { // keep the start, where a failed start explains itself
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// process is a program the bench runs and measures: storeflow or mosquitto.
type process struct {
	name   string
	cmd    *exec.Cmd
	out    syncBuffer
	exited chan struct{}
	err    error // set before exited is closed
}

func startProcess(name, bin string, args, env []string) (*process, error) {
	p := &process{name: name, cmd: exec.Command(bin, args...), exited: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

func (p *process) cpu() (time.Duration, error) { return processCPU(p.cmd.Process.Pid) }

// diedError says how p ended, with the start of its output.
func (p *process) diedError() error {
	out := p.out.String()
	if len(out) > 4000 {
		out = out[:4000] + "…"
	}
	return fmt.Errorf("bench: %s exited: %v\n%s", p.name, p.err, out)
}

// stop asks p to end (SIGTERM) and kills it after 10 s.
func (p *process) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// waitUntil polls ok every 20 ms until it holds, p exits, ctx ends or
// the timeout passes.
func (p *process) waitUntil(ctx context.Context, timeout time.Duration, what string, ok func() bool) error {
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			return fmt.Errorf("bench: %s: not %s within %s", p.name, what, timeout)
		}
		select {
		case <-p.exited:
			return p.diedError()
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond): // a poll interval
		}
	}
	return nil
}

// storeflow is a storeflow child process with its HTTP and MQTT addresses.
type storeflow struct {
	*process
	http, mqtt string
	client     http.Client
}

// startStoreflow runs exe as storeflow with env and the bench's settings
// (extra, last: they win) and returns once GET /readyz answers 200. With
// mqtt empty it embeds its broker on a free port; else it connects there.
func startStoreflow(ctx context.Context, exe string, env []string, mqtt string) (*storeflow, error) {
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	// Every visit gets its coupon: no threshold, and no frequency cap or
	// holdout (a customer visits many times in a run).
	extra := []string{"SIMULATOR_ENABLED=false", "PREDICTION_THRESHOLD=0", "COUPONS_PER_SHOPPER_PER_DAY=0", "COUPON_DEPARTMENT_COOLDOWN=0",
		"HOLDOUT_FRACTION=0", "LOG_LEVEL=warn", "DATA_DIR=", "HTTP_ADDR=" + httpAddr}
	name := "storeflow (embedded broker)"
	if mqtt == "" {
		if mqtt, err = freeAddr(); err != nil {
			return nil, err
		}
		extra = append(extra, "MQTT_HOST=", "BROKER_LISTEN_ADDR="+mqtt)
	} else {
		host, port, err := net.SplitHostPort(mqtt)
		if err != nil {
			return nil, fmt.Errorf("bench: --external %q: %w", mqtt, err)
		}
		name = "storeflow (broker " + mqtt + ")"
		extra = append(extra, "MQTT_HOST="+host, "MQTT_PORT="+port, "MQTT_NAME=storeflow-bench")
	}
	p, err := startProcess(name, exe, nil, append(append([]string(nil), env...), extra...))
	if err != nil {
		return nil, err
	}
	sf := &storeflow{process: p, http: httpAddr, mqtt: mqtt, client: http.Client{Timeout: 5 * time.Second}}
	err = p.waitUntil(ctx, 3*time.Minute, "ready (GET /readyz)", func() bool {
		resp, err := sf.client.Get("http://" + httpAddr + "/readyz")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err != nil {
		p.stop()
		return nil, err
	}
	return sf, nil
}

// Exposition is one scrape of /metrics in the text format.
type Exposition string

func (sf *storeflow) metrics() (Exposition, error) {
	resp, err := sf.client.Get("http://" + sf.http + "/metrics")
	if err != nil {
		return "", fmt.Errorf("bench: %s /metrics: %w", sf.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = errors.New(resp.Status)
	}
	if err != nil {
		return "", fmt.Errorf("bench: %s /metrics: %w", sf.name, err)
	}
	return Exposition(b), nil
}

// Sum adds the samples of metric name whose labels contain match.
func (e Exposition) Sum(name, match string) float64 {
	var total float64
	for line := range strings.SplitSeq(string(e), "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') || !strings.Contains(rest, match) {
			continue
		}
		if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			total += v
		}
	}
	return total
}

// byLabel is the samples of metric name by the value of label.
func (e Exposition) byLabel(name, label string) map[string]float64 {
	out := map[string]float64{}
	for line := range strings.SplitSeq(string(e), "\n") {
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		_, v, ok := strings.Cut(rest, label+`="`)
		if !ok {
			continue
		}
		value, _, _ := strings.Cut(v, `"`)
		if f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
			out[value] += f
		}
	}
	return out
}

// mosquittoBin is the installed mosquitto, or "".
func mosquittoBin() string {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	if fi, err := os.Stat("/usr/sbin/mosquitto"); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
		return "/usr/sbin/mosquitto"
	}
	return ""
}

// startMosquitto runs bin on a free loopback port, anonymous, without
// persistence, with room to queue every message of a run for a slow
// subscriber, and returns once it accepts connections.
func startMosquitto(ctx context.Context, bin string) (p *process, addr string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "storeflow-bench-mosquitto")
	if err != nil {
		return nil, "", nil, err
	}
	if addr, err = freeAddr(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, "", nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	conf := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 1000000\nlog_dest stderr\n", port)
	if os.Geteuid() == 0 {
		conf += "user root\n" // else it switches to the mosquitto user
	}
	file := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		_ = os.RemoveAll(dir)
		return nil, "", nil, err
	}
	if p, err = startProcess("mosquitto", bin, []string{"-c", file}, os.Environ()); err != nil {
		_ = os.RemoveAll(dir)
		return nil, "", nil, err
	}
	stop = func() {
		p.stop()
		_ = os.RemoveAll(dir)
	}
	err = p.waitUntil(ctx, 10*time.Second, "accepting connections on "+addr, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
	if err != nil {
		stop()
		return nil, "", nil, err
	}
	return p, addr, stop, nil
}

// startReferenceEmbedded runs the embedded broker in this process with no
// subscribers of its own: the reference when no mosquitto is installed.
func startReferenceEmbedded(ctx context.Context) (addr string, stop func(), err error) {
	b, err := broker.NewEmbedded(broker.Config{ListenAddr: "127.0.0.1:0"}, slog.New(slog.DiscardHandler), broker.EmbeddedOptions{})
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = b.Run(ctx)
	}()
	select {
	case <-b.Ready():
	case <-done:
		cancel()
		return "", nil, errors.New("bench: the reference broker stopped at start")
	}
	return b.Addr(), func() { cancel(); <-done; _ = b.Close() }, nil
}
