package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one omnisync service run as its own process, restarted after an
// unexpected exit (as a container's restart policy would) until the harness
// kills or stops it on purpose.
type proc struct {
	name    string
	args    []string
	env     []string
	addr    string // host:port it listens on (its /readyz when ready is set)
	ready   bool   // wait for /readyz to answer 200, not only for the port
	logPath string

	mu          sync.Mutex
	cmd         *exec.Cmd
	done        chan struct{} // closed when cmd exited
	wantUp      bool
	starts      int
	unexpected  []string // "time: exit status" of exits nobody asked for
	unsupervise bool
}

// start launches the process; it does not wait for readiness.
func (p *proc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.startLocked()
}

func (p *proc) startLocked() error {
	logf, err := os.OpenFile(p.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "=== %s start #%d at %s\n", p.name, p.starts+1, time.Now().UTC().Format(time.RFC3339Nano))
	cmd := exec.Command(p.args[0], p.args[1:]...)
	cmd.Stdout, cmd.Stderr, cmd.Env = logf, logf, append(os.Environ(), p.env...)
	// Its own process group: a Ctrl-C reaches the harness, which stops
	// every service itself.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting %s: %w", p.name, err)
	}
	p.cmd, p.done, p.wantUp = cmd, make(chan struct{}), true
	p.starts++
	done := p.done
	go func() {
		err := cmd.Wait()
		logf.Close()
		close(done)
		p.mu.Lock()
		defer p.mu.Unlock()
		if !p.wantUp || p.cmd != cmd || p.unsupervise {
			return
		}
		p.unexpected = append(p.unexpected, fmt.Sprintf("%s: %v", time.Now().UTC().Format(time.RFC3339), err))
		log.Printf("%s exited unexpectedly (%v); restarting it in 1 s", p.name, err)
		go func() {
			time.Sleep(time.Second)
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.wantUp && p.cmd == cmd {
				if err := p.startLocked(); err != nil {
					log.Printf("restarting %s: %v", p.name, err)
				}
			}
		}()
	}()
	return nil
}

// waitReady waits until the process listens on addr (and answers /readyz
// with 200 when ready is set).
func (p *proc) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		ok := false
		if p.ready {
			if resp, err := client.Get("http://" + p.addr + "/readyz"); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				ok = resp.StatusCode == http.StatusOK
			}
		} else if c, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
			c.Close()
			ok = true
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready on %s after %s; last lines of %s:\n%s", p.name, p.addr, timeout, p.logPath, tail(p.logPath, 30))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// kill sends SIGKILL and waits until the process is gone; it stays down
// until start.
func (p *proc) kill() {
	cmd, done := p.markDown()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
}

// stop asks the process to shut down (SIGINT), and kills it after 15 s.
func (p *proc) stop() { p.stopWith(syscall.SIGINT) }

// terminate stops the process as a container runtime or systemd does
// (SIGTERM), and kills it after 15 s.
func (p *proc) terminate() { p.stopWith(syscall.SIGTERM) }

func (p *proc) stopWith(sig syscall.Signal) {
	cmd, done := p.markDown()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
}

// markDown records that the process is meant to stay down (no restart)
// and returns its command and exit channel.
func (p *proc) markDown() (*exec.Cmd, chan struct{}) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.wantUp = false
	return p.cmd, p.done
}

func (p *proc) unexpectedExits() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.unexpected...)
}

// script runs one of the repository's scripts and returns its stdout;
// stderr goes to the harness log file (and into the error on failure).
func script(ctx context.Context, logw io.Writer, env []string, name string, args ...string) (string, error) {
	return command(ctx, logw, env, append([]string{"bash", name}, args...)...)
}

// command runs argv and returns its stdout; stderr goes to logw (and into
// the error on failure).
func command(ctx context.Context, logw io.Writer, env []string, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, io.MultiWriter(&stderr, logw)
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, lastLines(stderr.String(), 40))
	}
	return stdout.String(), nil
}

// freeAddr returns 127.0.0.1:PORT with a port the OS has free now (from
// its ephemeral range, far from the ports other runs on this machine use).
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// portsFree reports whether nothing listens on any of the ports and each
// can be bound.
func portsFree(ports ...int) bool {
	for _, p := range ports {
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}

// kafkaBasePort finds a base port for scripts/kafka.sh (clients on
// base..base+2, controllers on base+100..base+102) where all six are free,
// in 21000-27999: clear of 19092-19200 and 29092-29300 (other runs) and of
// the OS's ephemeral range.
func kafkaBasePort(nodes int) (int, error) {
	for try := 0; try < 200; try++ {
		base := 21000 + rand.IntN(7000)
		var ports []int
		for i := 0; i < nodes; i++ {
			ports = append(ports, base+i, base+100+i)
		}
		if portsFree(ports...) {
			return base, nil
		}
	}
	return 0, errors.New("no free base port for Kafka in 21000-27999")
}

// freePortIn returns a free port in [lo, hi).
func freePortIn(lo, hi int) (int, error) {
	for try := 0; try < 200; try++ {
		if p := lo + rand.IntN(hi-lo); portsFree(p) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("no free port in %d-%d", lo, hi-1)
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	return lastLines(string(b), n)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
