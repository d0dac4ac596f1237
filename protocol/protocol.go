// Package protocol is the wire contract between the host (kabuto) and the guest
// (kabuto-agent). It is the only package that code on both sides of the VM
// boundary imports.
//
// Transport: one virtio-serial port carries a yamux session; the host is the
// yamux client, the agent the server. The host opens every stream but one
// kind: the agent opens a MethodDNS stream per relayed DNS query. Every
// host-opened stream begins with one Request frame from the host and one
// Response frame from the agent. For an RPC the stream then ends. For an attach (stdin, stdout,
// stderr of a process) raw bytes follow the response until either side closes.
//
// Framing: a 4-byte big-endian length followed by that many bytes of JSON. A
// frame longer than MaxFrame is a protocol error; neither side allocates more
// than that for one message, whatever the peer claims.
package protocol

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Version is bumped on any incompatible change to the messages below.
const Version = 2

// MaxFrame bounds one control message (a whole OCI spec fits easily).
const MaxFrame = 4 << 20

// PortName is the virtio-serial port name the agent looks for in
// /sys/class/virtio-ports/*/name.
const PortName = "kabuto.agent"

// ShareTag is the 9p mount tag of the per-VM share, and ShareMount where the
// agent mounts it.
const (
	ShareTag   = "kshare"
	ShareMount = "/run/kabuto/share"
)

// RootfsTag is the 9p mount tag of the rootfs's own share, and RootfsMount
// where the agent mounts it, when the rootfs has a cache mode of its own
// (CreateRequest.RootfsCache): a 9p channel is mounted once, with one cache
// mode, and the bind sources stay on ShareTag with cache=mmap.
const (
	RootfsTag   = "krootfs"
	RootfsMount = "/run/kabuto/rootshare"
)

// 9p cache modes of the rootfs (configuration hypervisor.rootfs_cache).
const (
	// RootfsCacheMmap keeps the rootfs on the one share, coherent with the
	// host: no page cache but for mmap.
	RootfsCacheMmap = "mmap"
	// RootfsCacheLoose gives the rootfs its own share mounted cache=loose:
	// the guest caches data, attributes and names, and writes back.
	RootfsCacheLoose = "loose"
)

// Methods. Attach* methods turn the stream into a byte pipe after the response.
const (
	MethodHello      = "hello"
	MethodCreate     = "create"      // CreateRequest -> CreateResponse
	MethodStart      = "start"       // StartRequest -> Empty
	MethodExec       = "exec"        // ExecRequest -> ExecResponse (process created, running)
	MethodSignal     = "signal"      // SignalRequest -> Empty
	MethodWait       = "wait"        // ProcessRef -> WaitResponse (blocks until exit)
	MethodResize     = "resize"      // ResizeRequest -> Empty
	MethodCloseStdin = "close-stdin" // ProcessRef -> Empty
	MethodPs         = "ps"          // Empty -> PsResponse
	MethodStats      = "stats"       // Empty -> StatsResponse
	// MethodEvents answers Empty, then writes Event frames: one per OOM kill
	// in the container's cgroup, and an EventExit frame when the init has
	// exited, after which the agent closes the stream. The host ends it
	// early by closing the stream.
	MethodEvents   = "events"
	MethodUpdate   = "update"   // UpdateRequest -> Empty
	MethodFreeze   = "freeze"   // Empty -> Empty (cgroup freezer)
	MethodThaw     = "thaw"     // Empty -> Empty
	MethodShutdown = "shutdown" // Empty -> Empty (sync, then power off)
	MethodSync     = "sync"     // Empty -> Empty (write back the guest's dirty pages)
	MethodNetwork  = "network"  // NetworkRequest -> Empty (configure guest NICs)
	// MethodDNS is the one stream the agent opens towards the host: a
	// DNSQuery header, then one DNS message each way (see WriteDNSMessage).
	MethodDNS         = "dns"
	MethodAttachStdin = "attach-stdin" // ProcessRef; host writes, agent reads; host close = EOF
	MethodAttachOut   = "attach-stdout"
	MethodAttachErr   = "attach-stderr" // not used for terminal processes
)

// InitProcess names the container's init process in ProcessRef.ID.
const InitProcess = "init"

// Request is the first frame on every stream.
type Request struct {
	Version int             `json:"version"`
	Method  string          `json:"method"`
	Params  json.RawMessage `json:"params,omitempty"`
}

// Response is the agent's answer. Error is empty on success.
type Response struct {
	Error  string          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// Empty is the parameter or result of calls that carry none.
type Empty struct{}

// HelloRequest is hello's optional parameter (VM templating,
// docs/templating.md). A VM restored from a template starts with the
// template's memory: its kernel RNG state and clock are the template's. The
// host's first hello to such a VM carries fresh entropy, which the agent
// mixes into the kernel's pool before reseeding it, and the host's time,
// which becomes the guest's. A hello without parameters changes nothing.
type HelloRequest struct {
	Entropy      []byte `json:"entropy,omitempty"`
	TimeUnixNano int64  `json:"timeUnixNano,omitempty"`
}

// TemplateParam on the guest kernel command line (=1) boots the agent as a
// template: it does not mount the share, and once set up, with no host
// contact yet, it prints TemplateReadyMarker on the console, after which the
// host may snapshot the VM.
const (
	TemplateParam       = "kabuto.template"
	TemplateReadyMarker = "kabuto-agent: template ready"
)

// HelloResponse tells the host the agent is up and what it runs on.
type HelloResponse struct {
	Version       int    `json:"version"`
	KernelRelease string `json:"kernelRelease"`
}

// ProcessRef names a process of the container: InitProcess or an exec id.
type ProcessRef struct {
	ID string `json:"id"`
}

// Mount is an OCI mount whose bind source, when FromShare is set, is a path
// relative to ShareMount rather than a host path.
type CreateRequest struct {
	ContainerID string `json:"containerId"`
	// Spec is the bundle's spec with root.path and the sources of shared bind
	// mounts rewritten to paths relative to the share (see SharedSources).
	Spec *specs.Spec `json:"spec"`
	// RootfsShare is root.path relative to ShareMount, or to RootfsMount
	// when RootfsCache is set.
	RootfsShare string `json:"rootfsShare"`
	// RootfsCache, when set (RootfsCacheLoose), says the rootfs is on its
	// own 9p device (RootfsTag), to be mounted with that cache mode.
	RootfsCache string `json:"rootfsCache,omitempty"`
	// SharedSources lists the indexes of Spec.Mounts whose Source is relative
	// to ShareMount (bind mounts of host paths).
	SharedSources []int `json:"sharedSources,omitempty"`
	// Stdin says whether the init process's stdin will be attached; if not it
	// reads /dev/null.
	Stdin bool `json:"stdin"`
	// NoPivot asks for MS_MOVE and chroot instead of pivot_root (runc's
	// --no-pivot).
	NoPivot bool `json:"noPivot,omitempty"`
}

// CreateResponse returns the guest pid of the container's init.
type CreateResponse struct {
	Pid int `json:"pid"`
}

// StartRequest lets the container's process run. State is the OCI state
// the guest's startContainer hooks read on stdin.
type StartRequest struct {
	State json.RawMessage `json:"state,omitempty"`
}

// ExecRequest starts another process in the running container.
type ExecRequest struct {
	ID      string         `json:"id"`
	Process *specs.Process `json:"process"`
	Stdin   bool           `json:"stdin"`
	// Cgroup is an existing sub-cgroup of the container's cgroup (a
	// relative path) to run the process in, runc's exec --cgroup; empty
	// means the container's cgroup.
	Cgroup string `json:"cgroup,omitempty"`
}

// ExecResponse returns the guest pid of the exec'd process.
type ExecResponse struct {
	Pid int `json:"pid"`
}

// SignalRequest delivers Signal to the process, or with All to every process
// of the container.
type SignalRequest struct {
	ID     string `json:"id"`
	Signal int    `json:"signal"`
	All    bool   `json:"all,omitempty"`
}

// WaitResponse is the exit of a process. ExitCode follows the shell's
// convention: 128+N when signal N killed it.
type WaitResponse struct {
	ExitCode int `json:"exitCode"`
	Signal   int `json:"signal,omitempty"`
}

// ResizeRequest sets a terminal process's window size.
type ResizeRequest struct {
	ID   string `json:"id"`
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// PsProcess is one process as seen in the guest.
type PsProcess struct {
	Pid  int    `json:"pid"`
	PPid int    `json:"ppid"`
	UID  int    `json:"uid"`
	Cmd  string `json:"cmd"`
	// Exec is the exec id (or InitProcess) when the process is one the agent
	// started, empty otherwise.
	Exec string `json:"exec,omitempty"`
}

// PsResponse lists the container's processes.
type PsResponse struct {
	Processes []PsProcess `json:"processes"`
}

// StatsResponse is the container's cgroup statistics in the guest, in the
// shape and with the JSON names of runc's types.Stats (what `runc events`
// prints as an event's data), filled from cgroup v2 files the way runc
// fills them: figures v2 does not have stay zero.
type StatsResponse struct {
	CPU      CPUStats                `json:"cpu"`
	CPUSet   CPUSetStats             `json:"cpuset"`
	Memory   MemoryStats             `json:"memory"`
	Pids     PidsStats               `json:"pids"`
	Blkio    BlkioStats              `json:"blkio"`
	Hugetlb  map[string]HugetlbStats `json:"hugetlb"`
	IntelRdt IntelRdtStats           `json:"intel_rdt"`
	// NetworkInterfaces are the guest's NICs (the container shares the VM's
	// network namespace).
	NetworkInterfaces []*NetworkInterfaceStats `json:"network_interfaces"`
}

// CPUUsage is in nanoseconds (cpu.stat's usage_usec, user_usec, system_usec).
type CPUUsage struct {
	Total        uint64   `json:"total,omitempty"`
	Percpu       []uint64 `json:"percpu,omitempty"`
	PercpuKernel []uint64 `json:"percpu_kernel,omitempty"`
	PercpuUser   []uint64 `json:"percpu_user,omitempty"`
	Kernel       uint64   `json:"kernel"`
	User         uint64   `json:"user"`
}

// Throttling is cpu.stat's nr_periods, nr_throttled and throttled_usec
// (in nanoseconds).
type Throttling struct {
	Periods          uint64 `json:"periods,omitempty"`
	ThrottledPeriods uint64 `json:"throttledPeriods,omitempty"`
	ThrottledTime    uint64 `json:"throttledTime,omitempty"`
}

// CPUStats is runc's types.Cpu.
type CPUStats struct {
	Usage      CPUUsage   `json:"usage,omitempty"`
	Throttling Throttling `json:"throttling,omitempty"`
}

// CPUSetStats is runc's types.CPUSet; cgroup v2 has the effective CPUs and
// memory nodes only.
type CPUSetStats struct {
	CPUs                  []uint16 `json:"cpus,omitempty"`
	CPUExclusive          uint64   `json:"cpu_exclusive"`
	Mems                  []uint16 `json:"mems,omitempty"`
	MemHardwall           uint64   `json:"mem_hardwall"`
	MemExclusive          uint64   `json:"mem_exclusive"`
	MemoryMigrate         uint64   `json:"memory_migrate"`
	MemorySpreadPage      uint64   `json:"memory_spread_page"`
	MemorySpreadSlab      uint64   `json:"memory_spread_slab"`
	MemoryPressure        uint64   `json:"memory_pressure"`
	SchedLoadBalance      uint64   `json:"sched_load_balance"`
	SchedRelaxDomainLevel int64    `json:"sched_relax_domain_level"`
}

// MemoryEntry is one memory counter. Limit is math.MaxUint64 when there is
// none, as runc reports cgroup v2's "max".
type MemoryEntry struct {
	Limit   uint64 `json:"limit"`
	Usage   uint64 `json:"usage,omitempty"`
	Max     uint64 `json:"max,omitempty"`
	Failcnt uint64 `json:"failcnt"`
}

// MemoryStats is runc's types.Memory. As runc does on cgroup v2, Swap is
// memory plus swap (cgroup v1's memsw), Cache is memory.stat's file and Raw
// is memory.stat.
type MemoryStats struct {
	Cache     uint64            `json:"cache,omitempty"`
	Usage     MemoryEntry       `json:"usage,omitempty"`
	Swap      MemoryEntry       `json:"swap,omitempty"`
	Kernel    MemoryEntry       `json:"kernel,omitempty"`
	KernelTCP MemoryEntry       `json:"kernelTCP,omitempty"`
	Raw       map[string]uint64 `json:"raw,omitempty"`
}

// PidsStats is pids.current and pids.max (0: no limit).
type PidsStats struct {
	Current uint64 `json:"current,omitempty"`
	Limit   uint64 `json:"limit,omitempty"`
}

// BlkioEntry is one device's figure for one operation ("Read", "Write").
type BlkioEntry struct {
	Major uint64 `json:"major,omitempty"`
	Minor uint64 `json:"minor,omitempty"`
	Op    string `json:"op,omitempty"`
	Value uint64 `json:"value,omitempty"`
}

// BlkioStats is runc's types.Blkio; io.stat fills the bytes and the
// operations, as runc maps them.
type BlkioStats struct {
	IoServiceBytesRecursive []BlkioEntry `json:"ioServiceBytesRecursive,omitempty"`
	IoServicedRecursive     []BlkioEntry `json:"ioServicedRecursive,omitempty"`
	IoQueuedRecursive       []BlkioEntry `json:"ioQueueRecursive,omitempty"`
	IoServiceTimeRecursive  []BlkioEntry `json:"ioServiceTimeRecursive,omitempty"`
	IoWaitTimeRecursive     []BlkioEntry `json:"ioWaitTimeRecursive,omitempty"`
	IoMergedRecursive       []BlkioEntry `json:"ioMergedRecursive,omitempty"`
	IoTimeRecursive         []BlkioEntry `json:"ioTimeRecursive,omitempty"`
	SectorsRecursive        []BlkioEntry `json:"sectorsRecursive,omitempty"`
}

// HugetlbStats is one huge page size's hugetlb.<size>.current and the
// "max" count of hugetlb.<size>.events.
type HugetlbStats struct {
	Usage   uint64 `json:"usage,omitempty"`
	Max     uint64 `json:"max,omitempty"`
	Failcnt uint64 `json:"failcnt"`
}

// IntelRdtStats is always empty: the guest has no resctrl.
type IntelRdtStats struct{}

// NetworkInterfaceStats is runc's types.NetworkInterface (no JSON tags
// there either).
type NetworkInterfaceStats struct {
	Name      string
	RxBytes   uint64
	RxPackets uint64
	RxErrors  uint64
	RxDropped uint64
	TxBytes   uint64
	TxPackets uint64
	TxErrors  uint64
	TxDropped uint64
}

// Event is one frame the agent writes on a MethodEvents stream.
type Event struct {
	// Type is EventOOM or EventExit.
	Type string `json:"type"`
	// OOMKills is memory.events' oom_kill count of the container's cgroup
	// (EventOOM).
	OOMKills uint64 `json:"oomKills,omitempty"`
	// ExitCode is the init's exit status (EventExit, the last frame).
	ExitCode int `json:"exitCode,omitempty"`
}

// Event types.
const (
	EventOOM  = "oom"
	EventExit = "exit"
)

// UpdateRequest changes the container's cgroup resources in the guest.
type UpdateRequest struct {
	Resources *specs.LinuxResources `json:"resources"`
}

// Interface is a guest NIC to configure so that it mirrors a host interface
// of the container's network namespace (traffic is redirected between the
// two with tc on the host).
type Interface struct {
	// GuestMAC finds the NIC in the guest (the MAC QEMU gave it).
	GuestMAC string `json:"guestMac"`
	// Name, MAC and MTU are the host interface's; the guest NIC takes them.
	Name string `json:"name"`
	MAC  string `json:"mac"`
	MTU  int    `json:"mtu"`
	// Addresses in CIDR notation.
	Addresses []string `json:"addresses,omitempty"`
}

// Route is a route of the container's network namespace. An empty
// Destination is the default route.
type Route struct {
	Destination string `json:"destination,omitempty"`
	Gateway     string `json:"gateway,omitempty"`
	Device      string `json:"device,omitempty"`
	Source      string `json:"source,omitempty"`
	Scope       int    `json:"scope,omitempty"`
}

// NetworkRequest configures the guest's network like the host namespace.
type NetworkRequest struct {
	Interfaces []Interface `json:"interfaces"`
	Routes     []Route     `json:"routes,omitempty"`
	// Park lists guest NICs (by MAC) that mirror nothing: the agent moves
	// them out of the container's sight (docker's --network none).
	Park []string `json:"park,omitempty"`
	// DNSRelay lists loopback nameservers of the container's resolv.conf
	// (docker's embedded DNS at 127.0.0.11): they exist only in the host
	// namespace, so the agent answers on them in the guest and relays each
	// query to the host.
	DNSRelay []string `json:"dnsRelay,omitempty"`
}

// DNSQuery heads a MethodDNS stream: which relayed nameserver the query is
// for, and whether the guest client used TCP.
type DNSQuery struct {
	Server string `json:"server"`
	TCP    bool   `json:"tcp,omitempty"`
}

// MaxDNSMessage bounds one relayed DNS message (the TCP framing's limit).
const MaxDNSMessage = 65535

// WriteDNSMessage writes one DNS message with DNS-over-TCP framing (a
// big-endian 16-bit length first).
func WriteDNSMessage(w io.Writer, msg []byte) error {
	if len(msg) == 0 || len(msg) > MaxDNSMessage {
		return fmt.Errorf("dns message of %d bytes", len(msg))
	}
	b := make([]byte, 2+len(msg))
	b[0], b[1] = byte(len(msg)>>8), byte(len(msg))
	copy(b[2:], msg)
	_, err := w.Write(b)
	return err
}

// ReadDNSMessage reads one message written by WriteDNSMessage.
func ReadDNSMessage(r io.Reader) ([]byte, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(hdr[0])<<8 | int(hdr[1])
	if n == 0 {
		return nil, errors.New("empty dns message")
	}
	msg := make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, err
	}
	return msg, nil
}

// IsBindMount reports whether m binds a path (type "bind", or a bind/rbind
// option). Both sides must agree on it: the host shares the sources of
// exactly these mounts, and the agent resolves them in the share.
func IsBindMount(m specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

// ErrFrameTooLarge is returned for frames longer than MaxFrame.
var ErrFrameTooLarge = errors.New("protocol: frame too large")

// WriteFrame writes v as one length-prefixed JSON frame.
func WriteFrame(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("protocol: encode: %w", err)
	}
	if len(b) > MaxFrame {
		return ErrFrameTooLarge
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

// ReadFrame reads one frame into v. It never allocates more than MaxFrame.
func ReadFrame(r io.Reader, v any) error {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > MaxFrame {
		return ErrFrameTooLarge
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("protocol: decode: %w", err)
	}
	return nil
}

// NewRequest builds a Request for method with params marshalled.
func NewRequest(method string, params any) (*Request, error) {
	req := &Request{Version: Version, Method: method}
	if params != nil {
		b, err := json.Marshal(params)
		if err != nil {
			return nil, fmt.Errorf("protocol: encode %s params: %w", method, err)
		}
		req.Params = b
	}
	return req, nil
}

// Reply builds a Response carrying result, or err's text.
func Reply(result any, err error) *Response {
	if err != nil {
		msg := err.Error()
		if msg == "" {
			msg = "unknown error"
		}
		return &Response{Error: msg}
	}
	resp := &Response{}
	if result != nil {
		b, merr := json.Marshal(result)
		if merr != nil {
			return &Response{Error: "protocol: encode result: " + merr.Error()}
		}
		resp.Result = b
	}
	return resp
}

// RemoteError is an error the agent reported.
type RemoteError struct {
	Method string
	Msg    string
}

func (e *RemoteError) Error() string { return e.Msg }

// Decode returns the response's error, or unmarshals its result into v (which
// may be nil).
func (r *Response) Decode(method string, v any) error {
	if r.Error != "" {
		return &RemoteError{Method: method, Msg: r.Error}
	}
	if v == nil || len(r.Result) == 0 {
		return nil
	}
	if err := json.Unmarshal(r.Result, v); err != nil {
		return fmt.Errorf("protocol: decode %s result: %w", method, err)
	}
	return nil
}
