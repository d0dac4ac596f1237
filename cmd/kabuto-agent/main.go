// Command kabuto-agent is PID 1 of a kabuto guest (see guest/agent).
package main

import (
	"github.com/kabuto-runtime/kabuto/guest/agent"
	_ "github.com/kabuto-runtime/kabuto/guest/nsenter"
)

func main() { agent.Main() }
