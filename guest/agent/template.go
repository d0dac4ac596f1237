package agent

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/kabuto-runtime/kabuto/protocol"
)

// VM templating (docs/templating.md): a template guest boots with
// kabuto.template=1, sets itself up without the container's share, says so
// on the console and is snapshotted before any host contact. Every VM
// restored from it resumes here with the template's memory, so the host's
// first hello brings what must differ per VM: entropy and the time.

// maxHelloEntropy bounds the entropy one hello may carry.
const maxHelloEntropy = 512

// templateReady tells the host, on the console, that the template guest is
// set up and idle: the host snapshots it next.
func templateReady() {
	fmt.Fprintln(os.Stderr, protocol.TemplateReadyMarker)
}

// helloParams applies hello's optional parameters.
func helloParams(params json.RawMessage) error {
	if len(params) == 0 || string(params) == "null" {
		return nil
	}
	var req protocol.HelloRequest
	if err := decode(params, &req); err != nil {
		return err
	}
	if len(req.Entropy) > maxHelloEntropy {
		return fmt.Errorf("hello: %d bytes of entropy, at most %d", len(req.Entropy), maxHelloEntropy)
	}
	if len(req.Entropy) > 0 {
		if err := reseedKernelRNG(req.Entropy); err != nil {
			return err
		}
	}
	if req.TimeUnixNano > 0 {
		tv := unix.NsecToTimeval(req.TimeUnixNano)
		if err := unix.Settimeofday(&tv); err != nil {
			return fmt.Errorf("set the guest clock: %w", err)
		}
		logf("clock set to %v", time.Unix(0, req.TimeUnixNano).UTC())
	}
	return nil
}

// reseedKernelRNG mixes seed into the kernel's input pool, credited in full
// (it comes from the host's RNG), then forces the kernel's ChaCha generator
// to reseed from that pool at once. Reseeding bumps the generator's
// generation, which discards every per-CPU key and batch of random numbers
// carried over from the template, so what any process reads afterwards
// (getrandom, /dev/urandom, AT_RANDOM of a new exec) differs between VMs.
func reseedKernelRNG(seed []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("reseed the guest RNG: %w", err)
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
	buf := make([]byte, 8+(len(seed)+3)/4*4)
	binary.NativeEndian.PutUint32(buf[0:], uint32(8*len(seed)))
	binary.NativeEndian.PutUint32(buf[4:], uint32(len(seed)))
	copy(buf[8:], seed)
	if err := ioctlPtr(f, unix.RNDADDENTROPY, unsafe.Pointer(&buf[0])); err != nil {
		return fmt.Errorf("reseed the guest RNG: RNDADDENTROPY: %w", err)
	}
	if err := ioctlPtr(f, unix.RNDRESEEDCRNG, nil); err != nil {
		return fmt.Errorf("reseed the guest RNG: RNDRESEEDCRNG: %w", err)
	}
	logf("kernel RNG reseeded with %d bytes from the host", len(seed))
	return nil
}

func ioctlPtr(f *os.File, req uint, arg unsafe.Pointer) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var errno unix.Errno
	if err := rc.Control(func(fd uintptr) {
		_, _, errno = unix.Syscall(unix.SYS_IOCTL, fd, uintptr(req), uintptr(arg))
	}); err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}
