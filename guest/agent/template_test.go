package agent

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/kabuto-runtime/kabuto/protocol"
)

func TestHelloParams(t *testing.T) {
	for _, p := range []string{"", "null", "{}"} {
		if err := helloParams(json.RawMessage(p)); err != nil {
			t.Errorf("helloParams(%q) = %v", p, err)
		}
	}
	big, _ := json.Marshal(protocol.HelloRequest{Entropy: make([]byte, maxHelloEntropy+1)})
	if err := helloParams(big); err == nil || !strings.Contains(err.Error(), "entropy") {
		t.Errorf("oversized entropy: %v", err)
	}
	if err := helloParams(json.RawMessage(`{"entropy": 5}`)); err == nil {
		t.Error("malformed parameters accepted")
	}
}

// TestReseedKernelRNG runs the guest's reseed on the host kernel: mixing
// host-random bytes into the pool and reseeding is harmless there.
func TestReseedKernelRNG(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN) for RNDADDENTROPY")
	}
	for _, n := range []int{1, 61, 64} { // the pool takes whole 32-bit words
		seed := make([]byte, n)
		rand.Read(seed)
		if err := reseedKernelRNG(seed); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
	}
}
