package agent

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/kabuto-runtime/kabuto/protocol"
)

// DNS relay. A container whose resolv.conf names a loopback nameserver
// (docker's embedded DNS at 127.0.0.11 on user-defined networks) asks a
// server that exists only in the host's network namespace: docker NATs
// 127.0.0.11:53 there to its resolver. The agent answers on that address in
// the guest and hands each query to the host over the channel; the shim,
// which lives in the container's namespace, asks the real server.

const (
	dnsQueryTimeout = 6 * time.Second
	// dnsMaxInFlight bounds queries waiting on the host at once.
	dnsMaxInFlight = 64
)

type dnsRelay struct {
	a *agent
	// started holds the addresses already served.
	mu      sync.Mutex
	started map[string]bool
	slots   chan struct{}
}

// session returns the current host session (nil before the first).
func (a *agent) session() *yamux.Session {
	a.sessMu.Lock()
	defer a.sessMu.Unlock()
	return a.sess
}

func (a *agent) setSession(s *yamux.Session) {
	a.sessMu.Lock()
	a.sess = s
	a.sessMu.Unlock()
}

// startDNSRelay serves each address on UDP and TCP port 53 (once per
// address, however often the host asks).
func (a *agent) startDNSRelay(addrs []string) error {
	if len(addrs) > 8 {
		return errors.New("dns relay: too many nameservers")
	}
	r := a.dns
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range addrs {
		ip := net.ParseIP(s)
		if ip == nil || !ip.IsLoopback() {
			return fmt.Errorf("dns relay: %q is not a loopback address", s)
		}
		addr := net.JoinHostPort(ip.String(), "53")
		if r.started[addr] {
			continue
		}
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return fmt.Errorf("dns relay: %w", err)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			pc.Close()
			return fmt.Errorf("dns relay: %w", err)
		}
		r.started[addr] = true
		go r.serveUDP(pc, ip.String())
		go r.serveTCP(ln, ip.String())
		logf("dns relay on %s", addr)
	}
	return nil
}

func newDNSRelay(a *agent) *dnsRelay {
	return &dnsRelay{a: a, started: map[string]bool{}, slots: make(chan struct{}, dnsMaxInFlight)}
}

func (r *dnsRelay) serveUDP(pc net.PacketConn, server string) {
	buf := make([]byte, protocol.MaxDNSMessage)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			logf("dns relay: %v", err)
			return
		}
		if n == 0 {
			continue
		}
		select {
		case r.slots <- struct{}{}:
		default:
			continue // overloaded: the client retries
		}
		q := append([]byte(nil), buf[:n]...)
		go func() {
			defer func() { <-r.slots }()
			resp, err := r.ask(server, false, q)
			if err != nil {
				logf("dns relay: %v", err)
				return
			}
			pc.WriteTo(resp, from)
		}()
	}
}

func (r *dnsRelay) serveTCP(ln net.Listener, server string) {
	for {
		c, err := ln.Accept()
		if err != nil {
			logf("dns relay: %v", err)
			return
		}
		go func() {
			defer c.Close()
			for {
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				q, err := protocol.ReadDNSMessage(c)
				if err != nil {
					return
				}
				r.slots <- struct{}{}
				resp, err := r.ask(server, true, q)
				<-r.slots
				if err != nil {
					logf("dns relay: %v", err)
					return
				}
				if protocol.WriteDNSMessage(c, resp) != nil {
					return
				}
			}
		}()
	}
}

// ask relays one query to the host and returns its answer.
func (r *dnsRelay) ask(server string, tcp bool, q []byte) ([]byte, error) {
	sess := r.a.session()
	if sess == nil {
		return nil, errors.New("no host session")
	}
	s, err := sess.OpenStream()
	if err != nil {
		return nil, err
	}
	defer s.Close()
	s.SetDeadline(time.Now().Add(dnsQueryTimeout))
	req, err := protocol.NewRequest(protocol.MethodDNS, protocol.DNSQuery{Server: server, TCP: tcp})
	if err != nil {
		return nil, err
	}
	if err := protocol.WriteFrame(s, req); err != nil {
		return nil, err
	}
	if err := protocol.WriteDNSMessage(s, q); err != nil {
		return nil, err
	}
	return protocol.ReadDNSMessage(s)
}
