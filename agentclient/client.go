// Package agentclient is the host side of the guest channel: it opens
// streams to kabuto-agent (through a VM's hub socket, or directly on the
// yamux session inside the shim that owns it) and speaks protocol on them.
// Everything read from a stream comes from the guest and is untrusted: frames
// are bounded by protocol.ReadFrame and results are decoded into fixed types.
package agentclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/kabuto-runtime/kabuto/protocol"
	"github.com/kabuto-runtime/kabuto/vmstate"
)

// HubSocket is the name of the init shim's hub socket in the state dir:
// every connection to it becomes one stream to the agent.
const HubSocket = "hub.sock"

// Dialer opens a new stream to the agent.
type Dialer func(ctx context.Context) (net.Conn, error)

// Client calls the agent of one VM.
type Client struct {
	dial Dialer
}

// New returns a client that opens streams with dial.
func New(dial Dialer) *Client { return &Client{dial: dial} }

// ForStateDir returns a client that reaches the agent through the hub
// socket in a container's state dir.
func ForStateDir(dir string) *Client {
	return New(func(ctx context.Context) (net.Conn, error) {
		path, release, err := vmstate.SocketPath(dir, HubSocket)
		if err != nil {
			return nil, err
		}
		defer release()
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", path)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNoHub, err)
		}
		return c, nil
	})
}

// ErrNoHub means the container's shim (which owns the guest channel) is gone.
var ErrNoHub = errors.New("the container's shim is not reachable")

// open sends the request frame on a new stream and reads the response.
func (c *Client) open(ctx context.Context, method string, params any) (net.Conn, *protocol.Response, error) {
	req, err := protocol.NewRequest(method, params)
	if err != nil {
		return nil, nil, err
	}
	conn, err := c.dial(ctx)
	if err != nil {
		return nil, nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := protocol.WriteFrame(conn, req); err != nil {
		conn.Close()
		return nil, nil, ctxErr(ctx, fmt.Errorf("agent %s: send: %w", method, err))
	}
	var resp protocol.Response
	if err := protocol.ReadFrame(conn, &resp); err != nil {
		conn.Close()
		return nil, nil, ctxErr(ctx, fmt.Errorf("agent %s: %w", method, err))
	}
	return conn, &resp, nil
}

func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// Call runs one RPC: params out, result (may be nil) in.
func (c *Client) Call(ctx context.Context, method string, params, result any) error {
	conn, resp, err := c.open(ctx, method, params)
	if err != nil {
		return err
	}
	conn.Close()
	return resp.Decode(method, result)
}

// Attach opens a byte stream to a process's stdin, stdout or stderr
// (method is one of the protocol.MethodAttach* values).
func (c *Client) Attach(ctx context.Context, method, id string) (net.Conn, error) {
	conn, resp, err := c.open(ctx, method, protocol.ProcessRef{ID: id})
	if err != nil {
		return nil, err
	}
	if err := resp.Decode(method, nil); err != nil {
		conn.Close()
		return nil, err
	}
	// The deadline armed for the handshake must not outlive it.
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// Stream opens a stream for a method that goes on after its response
// (protocol.MethodEvents): the caller reads frames from the connection and
// closes it.
func (c *Client) Stream(ctx context.Context, method string, params any) (net.Conn, error) {
	conn, resp, err := c.open(ctx, method, params)
	if err != nil {
		return nil, err
	}
	if err := resp.Decode(method, nil); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return conn, nil
}

// Hello waits for the agent to answer and checks its protocol version.
func (c *Client) Hello(ctx context.Context) (*protocol.HelloResponse, error) {
	var h protocol.HelloResponse
	if err := c.Call(ctx, protocol.MethodHello, nil, &h); err != nil {
		return nil, err
	}
	if h.Version != protocol.Version {
		return nil, fmt.Errorf("guest agent speaks protocol version %d, this kabuto speaks %d (rebuild the guest image)", h.Version, protocol.Version)
	}
	return &h, nil
}

// Wait blocks until process id exits and returns its exit code.
func (c *Client) Wait(ctx context.Context, id string) (*protocol.WaitResponse, error) {
	var w protocol.WaitResponse
	if err := c.Call(ctx, protocol.MethodWait, protocol.ProcessRef{ID: id}, &w); err != nil {
		return nil, err
	}
	if w.ExitCode < 0 || w.ExitCode > 255 {
		return nil, fmt.Errorf("agent reported an impossible exit code %d", w.ExitCode)
	}
	return &w, nil
}

// Signal delivers sig to process id (or, with all, to every process).
func (c *Client) Signal(ctx context.Context, id string, sig int, all bool) error {
	return c.Call(ctx, protocol.MethodSignal, protocol.SignalRequest{ID: id, Signal: sig, All: all}, nil)
}
