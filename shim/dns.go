package shim

import (
	"encoding/json"
	"net"
	"path/filepath"
	"slices"
	"time"

	"github.com/hashicorp/yamux"

	"github.com/kabuto-runtime/kabuto/protocol"
	"github.com/kabuto-runtime/kabuto/vmstate"
)

// The guest's half of the DNS relay (guest/agent/dns.go) opens one stream per
// query; the shim, which lives in the container's network namespace, asks
// the nameserver there and returns its answer. The guest is untrusted: it
// may only reach the nameservers create recorded in the state, on port 53,
// with bounded messages, a bounded number at a time, each for a bounded time.

const (
	dnsTimeout     = 5 * time.Second
	dnsMaxInFlight = 32
)

// serveGuestStreams accepts the streams the agent opens until the session ends.
func (h *hub) serveGuestStreams(dir string) {
	slots := make(chan struct{}, dnsMaxInFlight)
	var allowed []string
	for {
		s, err := h.sess.AcceptStream()
		if err != nil {
			return
		}
		select {
		case slots <- struct{}{}:
		default:
			s.Close() // the guest's client retries
			continue
		}
		if len(allowed) == 0 {
			// Recorded by create once it configured the guest's network.
			id := filepath.Base(dir)
			if st, err := (vmstate.Store{Root: filepath.Dir(dir)}).Load(id); err == nil {
				allowed = st.DNSRelay
			}
		}
		go func(allowed []string) {
			defer func() { <-slots }()
			relayDNS(s, allowed)
		}(allowed)
	}
}

func relayDNS(s *yamux.Stream, allowed []string) {
	defer s.Close()
	s.SetDeadline(time.Now().Add(dnsTimeout))
	var req protocol.Request
	if err := protocol.ReadFrame(s, &req); err != nil || req.Method != protocol.MethodDNS {
		return
	}
	var q protocol.DNSQuery
	if err := json.Unmarshal(req.Params, &q); err != nil || !slices.Contains(allowed, q.Server) {
		return
	}
	msg, err := protocol.ReadDNSMessage(s)
	if err != nil {
		return
	}
	resp, err := askNameserver(q, msg)
	if err != nil {
		return
	}
	protocol.WriteDNSMessage(s, resp)
}

// askNameserver sends one query to the nameserver over the transport the
// guest's client used (a truncated UDP answer makes it retry over TCP).
func askNameserver(q protocol.DNSQuery, msg []byte) ([]byte, error) {
	addr := net.JoinHostPort(q.Server, "53")
	deadline := time.Now().Add(dnsTimeout)
	if q.TCP {
		c, err := net.DialTimeout("tcp", addr, dnsTimeout)
		if err != nil {
			return nil, err
		}
		defer c.Close()
		c.SetDeadline(deadline)
		if err := protocol.WriteDNSMessage(c, msg); err != nil {
			return nil, err
		}
		return protocol.ReadDNSMessage(c)
	}
	c, err := net.Dial("udp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(deadline)
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	buf := make([]byte, protocol.MaxDNSMessage)
	for {
		n, err := c.Read(buf)
		if err != nil {
			return nil, err
		}
		// Only the answer to this query (same id) goes back.
		if n >= 2 && len(msg) >= 2 && buf[0] == msg[0] && buf[1] == msg[1] {
			return buf[:n], nil
		}
	}
}
